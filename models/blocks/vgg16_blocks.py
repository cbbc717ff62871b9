"""Building blocks of VGG-16 (Simonyan & Zisserman, 2015) with BatchNorm."""
from torch import nn


def conv_block(in_channels: int, out_channels: int, conv_params: dict, maxpool_params: dict) -> nn.Sequential:
    """num_convs x (Conv2d, BatchNorm2d, ReLU), then MaxPool2d: [B, C_in, H, W] -> [B, C_out, H', W'].

    conv_params: {"num_convs": 2, **Conv2d keyword arguments}, e.g.
        {"num_convs": 2, "kernel_size": 3, "padding": 1}; the first conv maps in_channels to
        out_channels, the others keep out_channels. Conv2d keeps its default bias=True, as in
        torchvision's vgg16_bn.
    maxpool_params: MaxPool2d keyword arguments, e.g. {"kernel_size": 2, "stride": 2} (H' = H // 2).
    """
    conv_kwargs = dict(conv_params)
    num_convs = conv_kwargs.pop("num_convs")
    layers = []
    for index in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, **conv_kwargs),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(**maxpool_params))
    return nn.Sequential(*layers)


def classifier_block(in_features: int, out_features: int, linear_params: dict) -> nn.Sequential:
    """Linear, ReLU, Dropout: [B, in_features] -> [B, out_features].

    linear_params: {"dropout": p (default 0.5), **Linear keyword arguments}, e.g. {"dropout": 0.5}.
    """
    linear_kwargs = dict(linear_params)
    dropout = linear_kwargs.pop("dropout", 0.5)
    return nn.Sequential(nn.Linear(in_features, out_features, **linear_kwargs), nn.ReLU(inplace=True),
                         nn.Dropout(p=dropout))
