"""Splits, per-item seeds, the three loader paths and the choice between them, preview."""
