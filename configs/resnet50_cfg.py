"""Base ResNet-50 (the original, variant A) on Oxford-IIIT Pet from scratch: lr 1e-3,
batch 64, 100 epochs (the assignment's stage 2).

Optimizer: Adam. The assignment fixes lr = 1e-3 and batch 64 and leaves the optimizer open.
1e-3 is Adam's standard step size, while plain SGD at 1e-3 moves a from-scratch ResNet-50
very slowly: 100 epochs are only 5,800 steps at batch 64 (SGD recipes use lr ~0.1 at batch
256, i.e. 0.025 at 64, which is what resnet50_tricks uses through linear scaling). Weight
decay 1e-4 as in the ResNet paper; constant lr, no tricks, so the tricks config shows their gain.
"""
import copy

from easydict import EasyDict

from configs.pets_base import cfg as pets_cfg

cfg = copy.deepcopy(pets_cfg)
cfg.exp_name = "resnet50"
cfg.model_name = "ResNet50"
cfg.model = EasyDict(variant="A", zero_gamma=False)  # variant: A (original) | B | C | D
cfg.train.update(optimizer="Adam", optimizer_args={"betas": (0.9, 0.999)}, weight_decay=1e-4)
