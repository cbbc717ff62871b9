"""Downloads, image reading and the decoded-image cache."""
