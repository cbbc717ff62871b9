"""ResNet-B alone: the base ResNet-50 recipe with only the B tweak of the architecture."""
import copy

from configs.resnet50_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "resnet50_b"
cfg.model.variant = "B"
