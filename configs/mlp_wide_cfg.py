"""Width: one hidden layer of 1024 with ReLU instead of 200."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_wide"
cfg.model.layers = [
    ("Flatten", {}),
    ("Linear", {"in_features": 784, "out_features": 1024}), ("ReLU", {}),
    ("Linear", {"in_features": 1024, "out_features": 10}),
]
