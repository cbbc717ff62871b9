"""Config to transforms: per-item, batched and 8-bit families."""
