"""Reports over finished runs: comparison tables, statistics across seeds, figures."""
