"""Building blocks of ResNet-50 (He et al., 2016) and its B/C/D tweaks (He et al., "Bag of
Tricks", CVPR 2019, section 4). The tweaks are constructor flags:

* stride_on_3x3 (ResNet-B): a downsampling bottleneck strides in its 3x3 conv, not its first 1x1,
  so that 1x1 no longer skips three quarters of the input.
* deep_stem (ResNet-C): the 7x7 stem conv becomes three 3x3 convs.
* avg_down (ResNet-D): a downsampling shortcut average-pools 2x2 before a stride-1 1x1 conv.
"""
import torch
from torch import nn


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> list:
    """[Conv2d (no bias, "same" padding), BatchNorm2d]: [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""
    return [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels)]


class InputStem(nn.Sequential):
    """[B, C_in, H, W] -> [B, out_channels, H / 4, W / 4].

    deep_stem=False (ResNet-A/B): 7x7/2 conv, BN, ReLU, 3x3/2 max-pool.
    deep_stem=True (ResNet-C/D): three 3x3 convs with out_channels/2, out_channels/2, out_channels
    channels (the first with stride 2), each followed by BN and ReLU, then the 3x3/2 max-pool.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, deep_stem: bool = False):
        if deep_stem:
            half = out_channels // 2
            layers = []
            for c_in, c_out, stride in [(in_channels, half, 2), (half, half, 1), (half, out_channels, 1)]:
                layers += [*conv_bn(c_in, c_out, 3, stride), nn.ReLU(inplace=True)]
        else:
            layers = [*conv_bn(in_channels, out_channels, 7, stride=2), nn.ReLU(inplace=True)]
        super().__init__(*layers, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


def shortcut(in_channels: int, out_channels: int, stride: int, avg_down: bool) -> nn.Module:
    """Identity when shapes match, else a projection [B, C_in, H, W] -> [B, C_out, H / stride, W / stride].

    Projection: 1x1 conv with the stride + BN; with avg_down and stride > 1, AvgPool2d(stride)
    then a stride-1 1x1 conv + BN (ResNet-D).
    """
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if avg_down and stride > 1:
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, *conv_bn(in_channels, out_channels, 1))
    return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))


class Bottleneck(nn.Module):
    """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)):
    [B, in_channels, H, W] -> [B, 4 * mid_channels, H / stride, W / stride].

    conv1 1x1 (in -> mid), conv2 3x3 (mid -> mid), conv3 1x1 (mid -> 4 * mid). The stride sits on
    conv1 (original ResNet-A) or, with stride_on_3x3, on conv2 (ResNet-B/C/D). bn3 is the
    BatchNorm that zero-gamma initialises to 0, so the block starts as its shortcut.
    """

    expansion = 4

    def __init__(self, in_channels: int, mid_channels: int, stride: int = 1,
                 stride_on_3x3: bool = False, avg_down: bool = False):
        super().__init__()
        out_channels = mid_channels * self.expansion
        stride_1x1, stride_3x3 = (1, stride) if stride_on_3x3 else (stride, 1)
        self.conv1, self.bn1 = conv_bn(in_channels, mid_channels, 1, stride_1x1)
        self.conv2, self.bn2 = conv_bn(mid_channels, mid_channels, 3, stride_3x3)
        self.conv3, self.bn3 = conv_bn(mid_channels, out_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut(in_channels, out_channels, stride, avg_down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)  # in place, as torchvision's: one activation-sized buffer fewer per block
        return self.relu(out)


class Stage(nn.Sequential):
    """num_blocks bottlenecks; the first changes the resolution (stride) and the width to
    4 * mid_channels: [B, in_channels, H, W] -> [B, 4 * mid_channels, H / stride, W / stride].

    block_flags: stride_on_3x3 and avg_down, passed to every Bottleneck.
    """

    def __init__(self, in_channels: int, mid_channels: int, num_blocks: int, stride: int, **block_flags):
        out_channels = mid_channels * Bottleneck.expansion
        super().__init__(
            Bottleneck(in_channels, mid_channels, stride, **block_flags),
            *(Bottleneck(out_channels, mid_channels, 1, **block_flags) for _ in range(num_blocks - 1)),
        )
