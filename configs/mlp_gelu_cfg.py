"""Activation: GELU instead of ReLU in the base MLP."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_gelu"
cfg.model.layers[2] = ("GELU", {})
