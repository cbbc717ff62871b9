"""The speed benchmark: workloads, the runner, and the per-item template baseline it is measured against."""
