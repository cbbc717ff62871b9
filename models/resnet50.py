"""ResNet-50 (He et al., 2016) with the B/C/D tweaks and zero-gamma of "Bag of Tricks" (He et al., 2019)."""
import torch
from torch import nn

from models.blocks.resnet_blocks import Bottleneck, InputStem, Stage
from models.weight_decay import split_weight_decay_params
from utils.errors import ConfigError, did_you_mean

# variant -> architecture flags; each tweak keeps the previous ones, as in the paper and GluonCV.
VARIANTS = {
    "A": {"stride_on_3x3": False, "deep_stem": False, "avg_down": False},  # original ResNet
    "B": {"stride_on_3x3": True, "deep_stem": False, "avg_down": False},
    "C": {"stride_on_3x3": True, "deep_stem": True, "avg_down": False},
    "D": {"stride_on_3x3": True, "deep_stem": True, "avg_down": True},
}
DEFAULTS = {"variant": "A", "zero_gamma": False, "in_channels": 3, "layers": [3, 4, 6, 3], "width": 64}


class ResNet50(nn.Module):
    """stem (/4) -> 4 stages of bottlenecks (/1, /2, /2, /2) -> global average pool -> fc.

    cfg: the `model` config section; missing keys take the values in DEFAULTS.
        variant: "A" (original), "B" (stride on the 3x3 conv), "C" (B + three-conv stem),
            "D" (C + average-pool shortcut).
        zero_gamma: start the last BatchNorm of every bottleneck at gamma = 0.
        layers: bottlenecks per stage; width: stem output channels (stage i has
            width * 2**i mid channels and 4x as many outputs).
    """

    def __init__(self, cfg, nrof_classes: int):
        super().__init__()
        cfg = {**DEFAULTS, **cfg}
        if cfg["variant"] not in VARIANTS:
            hint = did_you_mean(str(cfg["variant"]), VARIANTS)
            raise ConfigError(f"Unknown ResNet-50 model.variant '{cfg['variant']}'; choose one of "
                              f"{', '.join(VARIANTS)}.{hint}")
        flags = VARIANTS[cfg["variant"]]
        width = cfg["width"]
        self.stem = InputStem(cfg["in_channels"], width, deep_stem=flags["deep_stem"])
        stages, channels = [], width
        for index, num_blocks in enumerate(cfg["layers"]):
            mid_channels = width * 2 ** index
            stages.append(Stage(channels, mid_channels, num_blocks, stride=1 if index == 0 else 2,
                                stride_on_3x3=flags["stride_on_3x3"], avg_down=flags["avg_down"]))
            channels = mid_channels * Bottleneck.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, nrof_classes)
        self.zero_gamma = cfg["zero_gamma"]
        self._init_weights()

    def _init_weights(self):
        """Xavier-uniform conv and fc weights, zero biases, BatchNorm gamma 1 and beta 0; with
        zero_gamma, gamma 0 in every bottleneck's bn3 (Bag of Tricks, section 3.1)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.zero_gamma:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, in_channels, H, W] -> logits [B, nrof_classes]; features are [B, 2048, H/32, W/32]."""
        features = self.stages(self.stem(images))
        return self.fc(torch.flatten(self.pool(features), 1))

    def weight_decay_params(self):
        """(wo_decay, w_decay): biases and BatchNorm parameters without decay ("no bias decay"),
        conv and fc weights with it."""
        return split_weight_decay_params(self)
