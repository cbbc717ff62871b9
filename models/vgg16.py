"""VGG-16 with BatchNorm (torchvision's vgg16_bn layout), built from conv_block and classifier_block."""
import torch
from torch import nn

from models.blocks.vgg16_blocks import classifier_block, conv_block
from models.weight_decay import split_weight_decay_params

DEFAULTS = {
    "conv_blocks": [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)],  # (out_channels, num_convs)
    "classifier_width": 4096,
    "dropout": 0.5,
    "in_channels": 3,
    "avgpool_size": 7,
}
CONV_PARAMS = {"kernel_size": 3, "padding": 1}
MAXPOOL_PARAMS = {"kernel_size": 2, "stride": 2}


class VGG16(nn.Module):
    """features (5 conv blocks, /32) -> AdaptiveAvgPool2d -> 2 classifier blocks -> head.

    cfg: the `model` config section; keys missing from it take the values in DEFAULTS, so
    VGG16(EasyDict(), 37) is VGG-16-BN for 37 classes. AdaptiveAvgPool2d((7, 7)) makes the
    classifier input 512*7*7 for any input size (224 -> 7x7 already; 32 -> 1x1 repeated).
    """

    def __init__(self, cfg, nrof_classes: int):
        super().__init__()
        cfg = {**DEFAULTS, **cfg}
        blocks, channels = [], cfg["in_channels"]
        for out_channels, num_convs in cfg["conv_blocks"]:
            blocks.append(conv_block(channels, out_channels, {"num_convs": num_convs, **CONV_PARAMS}, MAXPOOL_PARAMS))
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(cfg["avgpool_size"])
        width, linear_params = cfg["classifier_width"], {"dropout": cfg["dropout"]}
        self.classifier = nn.Sequential(
            classifier_block(channels * cfg["avgpool_size"] ** 2, width, linear_params),
            classifier_block(width, width, linear_params),
        )
        self.head = nn.Linear(width, nrof_classes)
        self._init_weights()

    def _init_weights(self):
        """As torchvision's VGG: Kaiming-normal (fan_out, ReLU) convs, N(0, 0.01) linears,
        BatchNorm gamma 1 and beta 0, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, in_channels, H, W] (H, W >= 32) -> logits [B, nrof_classes]."""
        features = self.avgpool(self.features(images))  # [B, 512, 7, 7]
        return self.head(self.classifier(torch.flatten(features, 1)))

    def weight_decay_params(self):
        """(wo_decay, w_decay): biases and BatchNorm parameters without decay, conv/linear weights with it."""
        return split_weight_decay_params(self)
