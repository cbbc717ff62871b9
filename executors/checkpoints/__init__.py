"""Checkpoints: saving and loading them, what a resume may change, the checks before inference."""
