"""Optimizer: AdamW (lr 1e-3, weight decay 1e-2, no decay on biases) instead of SGD with momentum."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_adamw"
cfg.train.optimizer = "AdamW"
cfg.train.optimizer_args = {"betas": (0.9, 0.999)}
cfg.train.lr = 1e-3
cfg.train.weight_decay = 1e-2
cfg.train.no_bias_decay = True
