"""Initialisation: Xavier (Glorot) normal weights instead of Kaiming uniform."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_xavier"
cfg.model.init_type.weight = ("xavier_normal_", {})
