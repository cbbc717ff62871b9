"""VGG-16 with BatchNorm on Oxford-IIIT Pet, from scratch: SGD lr 1e-3, momentum 0.9,
weight decay 5e-4, batch 64, 100 epochs (the assignment's stage 1)."""
import copy

from easydict import EasyDict

from configs.pets_base import cfg as pets_cfg

cfg = copy.deepcopy(pets_cfg)
cfg.exp_name = "vgg16"
cfg.model_name = "VGG16"
cfg.model = EasyDict(
    conv_blocks=[(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)],  # (out_channels, convs) per block
    classifier_width=4096,
    dropout=0.5,
)
cfg.train.update(optimizer="SGD", optimizer_args={"momentum": 0.9}, weight_decay=5e-4)
