"""Transform pipelines built from the config's lists of (name, kwargs), in three families:

* "per_item", on PIL images (`workers` path, evaluation, prediction): CUSTOM_TRANSFORMS, else
  the torchvision.transforms class of the name.
* "eight_bit", on uint8 [H, W, 3] RGB arrays (`cached` path; needs OpenCV): the name's twin in
  array_transforms.ARRAY_TWINS (same random draws), else the per-item transform through PIL.
* "batched", on an ImageBatch [B, C, H, W] on the training device (`device` path): the name's
  twin in batched_transforms.BATCHED_TRANSFORMS; without one, NotBatchable names it.
A Normalize without mean/std takes data.mean/std (normalize_kwargs, the one default).
"""
from torchvision import transforms as T

from datasets.transforms.batched_transforms import BATCHED_TRANSFORMS, BatchedCompose, NotBatchable
from datasets.transforms.color_jitter import ColorJitterFactor
from utils.errors import ConfigError, did_you_mean

CUSTOM_TRANSFORMS = {"ColorJitterFactor": ColorJitterFactor}
FAMILIES = ("per_item", "eight_bit", "batched")


def normalize_kwargs(kwargs: dict, mean, std, where: str) -> dict:
    """Normalize's `kwargs` with mean and std (per-channel lists, [0, 1] units) defaulting to
    `mean`/`std`; ConfigError naming `where` when neither gives them."""
    kwargs = dict(kwargs)
    kwargs.setdefault("mean", mean)
    kwargs.setdefault("std", std)
    if kwargs["mean"] is None or kwargs["std"] is None:
        raise ConfigError(f"Normalize needs mean and std: give them in {where} or in data.mean/std.")
    return kwargs


def per_item_class(name, where: str) -> type:
    """The per-item transform class of a config name; ConfigError naming `where` for an unknown one."""
    if name in CUSTOM_TRANSFORMS:
        return CUSTOM_TRANSFORMS[name]
    if isinstance(name, str) and not name.startswith("_") and isinstance(getattr(T, name, None), type):
        return getattr(T, name)
    choices = list(CUSTOM_TRANSFORMS) + [n for n in dir(T) if isinstance(getattr(T, n), type)]
    raise ConfigError(f"Unknown transform '{name}' in {where}.{did_you_mean(str(name), choices)}")


def build_transforms(specs, mean=None, std=None, family="per_item", key="data.transforms"):
    """The transforms named in `specs`, a list of (name, kwargs or None), as one pipeline of
    `family` (see the module docstring): T.Compose, or BatchedCompose for "batched".

    An unknown name or arguments its class refuses is a ConfigError naming `key`[i] (the config
    list, e.g. data.transforms.train, and the position in it); in the batched family a
    NotBatchable saying what has no batched version."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    twins, wrap = {}, None
    if family == "eight_bit":
        from datasets.transforms.array_transforms import ARRAY_TWINS as twins, OnPIL as wrap  # OpenCV: only here
    steps = []
    for index, (name, kwargs) in enumerate(specs):
        where, kwargs = f"{key}[{index}]", dict(kwargs or {})
        if name == "Normalize":
            kwargs = normalize_kwargs(kwargs, mean, std, where)
        if family == "batched" and name not in BATCHED_TRANSFORMS:
            raise NotBatchable(f"the transform {name} has no batched version for data.loader='device' "
                               f"(batched: {', '.join(BATCHED_TRANSFORMS)})")
        cls = BATCHED_TRANSFORMS[name] if family == "batched" else twins.get(name) or per_item_class(name, where)
        try:
            step = cls(**kwargs)
        except (TypeError, ValueError) as error:
            if family == "batched":
                raise NotBatchable(f"the batched {name}({kwargs}) is not supported ({error})") from None
            raise ConfigError(f"{where}: {name}({kwargs}) is invalid: {error}.") from None
        steps.append(wrap(step) if wrap and name not in twins else step)
    return BatchedCompose(steps) if family == "batched" else T.Compose(steps)
