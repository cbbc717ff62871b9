"""Experiment configs: one module per experiment, each exposing a module-level `cfg`.

Configs are plain data. `python scripts/train.py --cfg NAME` loads `configs/NAME_cfg.py`.
"""
