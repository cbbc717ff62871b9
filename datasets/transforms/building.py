"""Transform pipelines built from the config's lists of (name, kwargs).

Names are looked up among this project's transforms first (CUSTOM_TRANSFORMS), then in
torchvision.transforms. A `Normalize` without mean/std takes the dataset's statistics.
"""

from torchvision import transforms as T

from datasets.transforms.color_jitter import ColorJitterFactor
from utils.errors import ConfigError, did_you_mean

CUSTOM_TRANSFORMS = {"ColorJitterFactor": ColorJitterFactor}


def _transform_class(name, classes, where):
    if classes and name in classes:
        return classes[name]
    if name in CUSTOM_TRANSFORMS:
        return CUSTOM_TRANSFORMS[name]
    if isinstance(name, str) and not name.startswith("_") and isinstance(getattr(T, name, None), type):
        return getattr(T, name)
    choices = list(CUSTOM_TRANSFORMS) + [n for n in dir(T) if isinstance(getattr(T, n), type)]
    hint = did_you_mean(str(name), choices)
    raise ConfigError(f"Unknown transform '{name}' in {where}.{hint}")


def build_transforms(specs, mean=None, std=None, classes=None, key="data.transforms") -> T.Compose:
    """Compose the transforms named in `specs`, a list of (name, kwargs or None); `classes`
    {name: class} replaces the usual class of those names (the cached path's array twins).
    An unknown name or arguments its class refuses is a ConfigError naming `key`[i] (the
    config list, e.g. data.transforms.train, and the position in it)."""
    pipeline = []
    for index, (name, kwargs) in enumerate(specs):
        where, kwargs = f"{key}[{index}]", dict(kwargs or {})
        if name == "Normalize":
            kwargs.setdefault("mean", mean)
            kwargs.setdefault("std", std)
            if kwargs["mean"] is None or kwargs["std"] is None:
                raise ConfigError(f"Normalize needs mean and std: give them in {where} or in data.mean/std.")
        try:
            pipeline.append(_transform_class(name, classes, where)(**kwargs))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {name}({kwargs}) is invalid: {error}.") from None
    return T.Compose(pipeline)
