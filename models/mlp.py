"""Multilayer perceptron whose layers and initialisation come from the config."""

import torch
from torch import nn

from models.weight_decay import split_weight_decay_params
from utils.errors import ConfigError, did_you_mean


def _lookup(namespace, name, what):
    """`getattr(namespace, name)` or a ConfigError suggesting close names."""
    if isinstance(name, str) and not name.startswith("_") and hasattr(namespace, name):
        return getattr(namespace, name)
    choices = [n for n in dir(namespace) if not n.startswith("_")]
    hint = did_you_mean(str(name), choices)
    raise ConfigError(f"Unknown {what} '{name}' in model config.{hint}")


class MLP(nn.Module):
    """A stack of torch.nn layers named in the config, applied to a whole batch.

    cfg.layers: list of (nn class name, kwargs), e.g. ("Linear", {"in_features": 784,
        "out_features": 200}); input [B, 1, 28, 28] when the list starts with Flatten.
    cfg.init_type: {"weight": (fn name, kwargs), "bias": (fn name, kwargs)}, names of
        torch.nn.init functions applied to every Linear layer.
    """

    def __init__(self, cfg):
        super().__init__()
        self.layers = self._init_layers(cfg.layers)
        self._init_weights(cfg.init_type)

    @staticmethod
    def _init_layers(layer_specs):
        """Build nn.Sequential from (class name, kwargs) pairs."""
        layers = []
        for name, kwargs in layer_specs:
            layer_class = _lookup(nn, name, "layer")
            try:
                layers.append(layer_class(**(kwargs or {})))
            except TypeError as error:
                raise ConfigError(f"Model layer {name}({kwargs}) is invalid: {error}.") from None
        return nn.Sequential(*layers)

    def _init_weights(self, init_type):
        """Initialise every Linear layer's weight and bias with the named torch.nn.init functions."""
        (weight_fn, weight_args), (bias_fn, bias_args) = init_type.weight, init_type.bias
        weight_init = _lookup(nn.init, weight_fn, "weight initialisation")
        bias_init = _lookup(nn.init, bias_fn, "bias initialisation")
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                try:
                    weight_init(layer.weight, **(weight_args or {}))
                    if layer.bias is not None:
                        bias_init(layer.bias, **(bias_args or {}))
                except (TypeError, ValueError) as error:
                    raise ConfigError(f"Initialisation {weight_fn}/{bias_fn} failed: {error}.") from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 1, 28, 28] (or [B, 784]) -> logits [B, num_classes]."""
        return self.layers(images)

    def weight_decay_params(self):
        """(wo_decay, w_decay): biases without weight decay, Linear weights with it."""
        return split_weight_decay_params(self)
