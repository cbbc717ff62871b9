"""Base MLP with random 2-pixel shifts of the training images (Pad 2, then RandomCrop 28)."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_augment"
cfg.data.transforms.train = [("Pad", {"padding": 2}), ("RandomCrop", {"size": 28}),
                             ("ToTensor", {}), ("Normalize", {})]
