"""Build a model from `cfg.model_name` and count its trainable parameters."""
import difflib

from torch import nn

from models.mlp import MLP
from models.resnet50 import ResNet50
from models.vgg16 import VGG16
from utils.errors import ConfigError

MODELS = {"MLP": MLP, "VGG16": VGG16, "ResNet50": ResNet50}


def build_model(model_name, model_cfg, num_classes):
    """Return the model named `model_name` built from the `model` config section.

    The MLP's output width is part of its layer list; it must equal `num_classes`.
    """
    if model_name not in MODELS:
        close = difflib.get_close_matches(str(model_name), MODELS, n=2)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown model_name '{model_name}'; choose one of {', '.join(MODELS)}.{hint}")
    if model_name == "MLP":
        model = MLP(model_cfg)
        outputs = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
        if not outputs or outputs[-1] != num_classes:
            raise ConfigError(
                f"The MLP's last Linear layer has out_features={outputs[-1] if outputs else None}, "
                f"but the dataset has {num_classes} classes: fix model.layers."
            )
        return model
    return MODELS[model_name](model_cfg, num_classes)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of scalar parameters with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
