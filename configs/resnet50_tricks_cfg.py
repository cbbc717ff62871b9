"""ResNet-50-D with every trick of the Bag of Tricks (He et al., CVPR 2019) on:

ResNet-D (B's stride on the 3x3 conv, C's three-conv stem, D's average-pool shortcut),
zero-gamma in the last BatchNorm of each bottleneck, SGD with Nesterov momentum at the
linearly scaled lr 0.1 * batch / 256, 5 warmup epochs then cosine decay to zero (both per
iteration), label smoothing 0.1, and weight decay 1e-4 on conv and linear weights only.
"""
import copy

from configs.resnet50_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "resnet50_tricks"
cfg.model.update(variant="D", zero_gamma=True)
cfg.train.update(
    optimizer="SGD", optimizer_args={"momentum": 0.9, "nesterov": True},
    lr_scaling={"base_lr": 0.1, "base_batch_size": 256}, weight_decay=1e-4, no_bias_decay=True,
    warmup_epochs=5.0, scheduler="cosine", label_smoothing=0.1,
)
