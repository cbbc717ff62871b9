"""Multilayer perceptron whose layers and initialisation come from the config."""

import torch
from torch import nn

from models.weight_decay import split_weight_decay_params
from utils.errors import ConfigError, did_you_mean, first_line


def _lookup(namespace, name, what, key):
    """`getattr(namespace, name)` or a ConfigError naming the config key and suggesting close names."""
    if isinstance(name, str) and not name.startswith("_") and hasattr(namespace, name):
        return getattr(namespace, name)
    choices = [n for n in dir(namespace) if not n.startswith("_")]
    hint = did_you_mean(str(name), choices)
    raise ConfigError(f"Unknown {what} '{name}' in {key} (not in {namespace.__name__}).{hint}")


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
        """Build nn.Sequential from (class name, kwargs) pairs; ConfigError naming model.layers[i]
        for a name that is not a torch.nn layer or arguments it refuses."""
        layers = []
        for index, (name, kwargs) in enumerate(layer_specs):
            key = f"model.layers[{index}]"
            layer_class = _lookup(nn, name, "layer", key)
            try:
                layer = layer_class(**(kwargs or {}))
            except Exception as error:  # any class of torch.nn, any refusal of its arguments
                raise ConfigError(f"{key}: {name}({kwargs}) cannot be built: {first_line(error)}. Fix {key}.") \
                    from None
            if not isinstance(layer, nn.Module):
                raise ConfigError(f"{key}: torch.nn.{name} is not a layer (an nn.Module); use a layer class such as "
                                  f"Linear or ReLU.")
            layers.append(layer)
        return nn.Sequential(*layers)

    def _init_weights(self, init_type):
        """Initialise every Linear layer's weight, then its bias, with the named torch.nn.init
        functions; ConfigError naming model.init_type.weight or .bias for a function or arguments
        torch refuses."""
        inits = {}
        for part in ("weight", "bias"):
            name, arguments = init_type[part]
            inits[part] = name, arguments, _lookup(nn.init, name, f"{part} initialisation", f"model.init_type.{part}")
        for layer in self.layers:
            for part, (name, arguments, init) in inits.items():
                tensor = getattr(layer, part) if isinstance(layer, nn.Linear) else None
                if tensor is None:
                    continue
                try:
                    init(tensor, **(arguments or {}))
                except Exception as error:  # any refusal of the function or its arguments
                    key = f"model.init_type.{part}"
                    raise ConfigError(f"{key}: {name}({arguments}) cannot initialise a {part} of shape "
                                      f"{list(tensor.shape)}: {first_line(error)}. Fix {key}.") from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 1, 28, 28] (or [B, 784]) -> logits [B, num_classes]."""
        return self.layers(images)

    def weight_decay_params(self):
        """(wo_decay, w_decay): biases without weight decay, Linear weights with it."""
        return split_weight_decay_params(self)
