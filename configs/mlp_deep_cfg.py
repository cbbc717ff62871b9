"""Depth: three hidden layers of 200 with ReLU instead of one."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_deep"
cfg.model.layers = [
    ("Flatten", {}),
    ("Linear", {"in_features": 784, "out_features": 200}), ("ReLU", {}),
    ("Linear", {"in_features": 200, "out_features": 200}), ("ReLU", {}),
    ("Linear", {"in_features": 200, "out_features": 200}), ("ReLU", {}),
    ("Linear", {"in_features": 200, "out_features": 10}),
]
