"""Run folders and what a run writes there: metrics files, figures, console progress, sweeps."""
