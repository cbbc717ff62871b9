"""Build a model from `cfg.model_name` and count its trainable parameters."""
import importlib

from torch import nn

from utils.errors import ConfigError, did_you_mean

# model_name -> (module, class); a model's module is imported only when that model is built.
MODELS = {"MLP": ("models.mlp", "MLP"), "VGG16": ("models.vgg16", "VGG16"), "ResNet50": ("models.resnet50", "ResNet50")}


def build_model(model_name, model_cfg, num_classes):
    """Return the model named `model_name` built from the `model` config section.

    The MLP's output width is part of its layer list; it must equal `num_classes`.
    """
    if model_name not in MODELS:
        hint = did_you_mean(str(model_name), MODELS)
        raise ConfigError(f"Unknown model_name '{model_name}'; choose one of {', '.join(MODELS)}.{hint}")
    module_name, class_name = MODELS[model_name]
    model_class = getattr(importlib.import_module(module_name), class_name)
    if model_name == "MLP":
        model = model_class(model_cfg)
        outputs = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
        if not outputs or outputs[-1] != num_classes:
            raise ConfigError(
                f"The MLP's last Linear layer has out_features={outputs[-1] if outputs else None}, "
                f"but the dataset has {num_classes} classes: fix model.layers."
            )
        return model
    return model_class(model_cfg, num_classes)


def has_batch_norm(model_name, model_cfg) -> bool:
    """Whether the model has BatchNorm layers, which cannot train on a batch of one image; read
    from the config, nothing is built. VGG16 and ResNet50 always have them; the MLP when
    model.layers names one (BatchNorm1d, ...)."""
    if model_name != "MLP":
        return True
    classes = (getattr(nn, name, None) for name, _ in model_cfg.layers)
    return any(isinstance(c, type) and issubclass(c, nn.modules.batchnorm._BatchNorm) for c in classes)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of scalar parameters with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
