"""Config values of the right type but outside what they may be, found before any work starts.

`check_values(cfg)` applies RULES (dotted key -> what the key accepts) to every key present
in the config and raises one ConfigError that names each bad key, its value and the allowed
range. `warnings_for(cfg)` returns notes on settings that are valid but probably unintended
(a warmup as long as the run). Choice lists (LOADERS, SCHEDULES, BACKENDS, NEPTUNE_MODES) are
defined here and imported by the modules that act on them (utils imports nothing of theirs);
tests/test_config.py checks the registries' names (data.name, model_name) against the rules.
"""
import math
import re

import torch

from utils.errors import ConfigError, did_you_mean
from utils.runtime import AMP_MODES, resolve_device

LOADERS = ("auto", "device", "cached", "workers")  # data.loader: datasets/loading/
SCHEDULES = ("cosine", "constant")  # train.scheduler: executors/optim.py
BACKENDS = ("mlflow", "neptune", "tensorboard", "none")  # logger.backend: logs/Logger.py
NEPTUNE_MODES = ("offline", "debug", "async", "sync")  # logger.neptune_mode: logs/neptune_backend.py


class Rule:
    """What a key accepts: `accepts(value) -> bool` and the words for it ("a whole number >= 1")."""

    def __init__(self, accepts, words, choices=()):
        self.accepts, self.words, self.choices = accepts, words, choices


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_words(low, high, low_open, high_open):
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def whole(low=None, high=None, optional=False) -> Rule:
    """An int (not a bool) in [low, high]; None too when optional."""
    def accepts(value):
        return (optional and value is None) or (
            _is_int(value) and (low is None or value >= low) and (high is None or value <= high))
    return Rule(accepts, f"a whole number {_range_words(low, high, False, False)}" + (", or None" if optional else ""))


def number(low=None, high=None, low_open=False, high_open=False, optional=False) -> Rule:
    """A finite int or float in the range (ends open or closed); None too when optional."""
    def accepts(value):
        if optional and value is None:
            return True
        if not _is_number(value) or not math.isfinite(value):
            return False
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below
    bounds = f" {_range_words(low, high, low_open, high_open)}" if (low, high) != (None, None) else ""
    return Rule(accepts, "a finite number" + bounds + (", or None" if optional else ""))


def one_of(*choices, optional=False) -> Rule:
    return Rule(lambda value: (optional and value is None) or value in choices,
                "one of " + ", ".join(map(str, choices)) + (", or None" if optional else ""), choices)


def boolean() -> Rule:
    return Rule(lambda value: isinstance(value, bool), "True or False")


def text(pattern=r".+", words="a non-empty string", optional=False) -> Rule:
    """A string matching `pattern` in full; None too when optional."""
    def accepts(value):
        return (optional and value is None) or (isinstance(value, str) and bool(re.fullmatch(pattern, value)))
    return Rule(accepts, words + (", or None" if optional else ""))


def path(optional=False) -> Rule:
    """A non-empty string without NUL characters (which no file system takes); None too when optional."""
    return text(r"[^\x00]+", "a path: a non-empty string without NUL characters", optional)


def pairs_of_whole_numbers() -> Rule:
    """A non-empty list of (whole >= 1, whole >= 1) pairs, e.g. VGG's [(64, 2), (128, 2)]."""
    return Rule(lambda value: isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_int(v) and v >= 1 for v in pair)
        for pair in value), "a non-empty list of (whole number >= 1, whole number >= 1) pairs")


def numbers(positive=False, optional=False) -> Rule:
    """A non-empty list of finite numbers (> 0 when positive); None too when optional."""
    item = number(0, low_open=True) if positive else number()
    return Rule(lambda value: (optional and value is None) or (
        isinstance(value, (list, tuple)) and len(value) > 0 and all(item.accepts(v) for v in value)),
        f"a list of finite numbers{' > 0' if positive else ''}" + (", or None" if optional else ""))


def mapping(optional=False) -> Rule:
    return Rule(lambda value: (optional and value is None) or isinstance(value, dict),
                "a dict" + (", or None" if optional else ""))


def strings() -> Rule:
    return Rule(lambda value: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
                "a list of strings")


def _is_spec(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], dict))


def spec(optional=False) -> Rule:
    """A (name, kwargs dict) pair, e.g. ("kaiming_uniform_", {"nonlinearity": "relu"})."""
    return Rule(lambda value: (optional and value is None) or _is_spec(value),
                "a (name, {keyword arguments}) pair" + (", or None" if optional else ""))


def specs() -> Rule:
    """A list of (name, kwargs dict) pairs, e.g. [("ToTensor", {}), ("Normalize", {})]."""
    return Rule(lambda value: isinstance(value, (list, tuple)) and all(_is_spec(item) for item in value),
                "a list of (name, {keyword arguments}) pairs")


def whole_numbers(count=None) -> Rule:
    """A list of whole numbers >= 1 (of `count` items when given)."""
    return Rule(lambda value: isinstance(value, (list, tuple)) and (count is None or len(value) == count)
                and all(_is_int(v) and v >= 1 for v in value),
                f"a list of {count or 'some'} whole numbers >= 1")


OPTIMIZERS = tuple(name for name in dir(torch.optim) if isinstance(getattr(torch.optim, name), type)
                   and issubclass(getattr(torch.optim, name), torch.optim.Optimizer) and name != "Optimizer")

RULES = {
    "exp_name": text(r"(?!\.\.?$)[\w.-]+", "a name of letters, digits, '_', '-' and '.' (it names the run directory)"),
    "exp_dir": path(),
    "seed": whole(0, 2**32 - 1),
    "device": text(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:N or mps"),
    "model_name": one_of("MLP", "VGG16", "ResNet50"),
    "threads": whole(1, optional=True),
    "data.name": one_of("KMNIST", "OxfordIIITPet"),
    "data.root": path(),
    "data.download": boolean(),
    "data.mirrors": strings(),
    "data.md5": mapping(optional=True),
    "data.num_workers": whole(0),
    "data.loader": one_of(*LOADERS),
    "data.cache_dir": path(optional=True),
    "data.cache_max_side": whole(1, optional=True),
    "data.mean": numbers(optional=True),
    "data.std": numbers(positive=True, optional=True),
    "data.val_fraction": number(0, 1, high_open=True),
    "data.val_seed": whole(0, 2**32 - 1, optional=True),
    "data.transforms.train": specs(),
    "data.transforms.test": specs(),
    "train.epochs": whole(1),
    "train.batch_size": whole(1),
    "train.optimizer": one_of(*OPTIMIZERS),
    "train.optimizer_args": mapping(optional=True),
    "train.lr": number(0, low_open=True),
    "train.lr_scaling": Rule(lambda value: value is None or (
        isinstance(value, dict) and set(value) == {"base_lr", "base_batch_size"}
        and all(number(0, low_open=True).accepts(v) for v in value.values())),
        "None or {'base_lr': finite > 0, 'base_batch_size': finite > 0}"),
    "train.weight_decay": number(0),
    "train.no_bias_decay": boolean(),
    "train.scheduler": one_of(*SCHEDULES),
    "train.warmup_epochs": number(0),
    "train.label_smoothing": number(0, 1, high_open=True),
    "train.amp": one_of(*AMP_MODES),
    "train.compile": boolean(),
    "train.cuda_graph": boolean(),
    "train.sync_bn": boolean(),
    "train.max_nonfinite_steps": whole(1, optional=True),
    "train.grad_clip_norm": number(0, low_open=True, optional=True),
    "train.confusion_matrix_every_epoch": boolean(),
    "train.overfit_batch_steps": whole(1),
    "train.ema_decay": number(0, 1, low_open=True, high_open=True, optional=True),
    "train.ema_warmup": boolean(),
    "logger.backend": one_of(*BACKENDS),
    "logger.experiment": text(optional=True),
    "logger.tracking_uri": text(optional=True),
    "logger.neptune_project": text(optional=True),
    "logger.neptune_mode": one_of(*NEPTUNE_MODES, optional=True),
    "logger.flush_every": whole(1),
}

MODEL_RULES = {  # the `model` section means something else for each model_name
    "MLP": {"model.layers": specs(), "model.init_type.weight": spec(), "model.init_type.bias": spec()},
    "VGG16": {"model.dropout": number(0, 1, high_open=True), "model.classifier_width": whole(1),
              "model.conv_blocks": pairs_of_whole_numbers(), "model.in_channels": whole(1),
              "model.avgpool_size": whole(1)},
    "ResNet50": {"model.layers": whole_numbers(4), "model.width": whole(1), "model.zero_gamma": boolean(),
                 "model.variant": one_of("A", "B", "C", "D"), "model.in_channels": whole(1)},
}

_MISSING = object()


def _lookup(cfg, dotted_key):
    node = cfg
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def problems(cfg, rules=None) -> list:
    """'key=value: must be ...' for every key of `rules` (default: RULES and the MODEL_RULES of
    cfg.model_name) present in `cfg` whose value the rule does not accept, in the rules' order."""
    found = []
    model_rules = MODEL_RULES.get(cfg.get("model_name"), {}) if rules is None else {}
    for key, rule in {**(rules or RULES), **model_rules}.items():
        value = _lookup(cfg, key)
        if value is _MISSING or rule.accepts(value):
            continue
        hint = did_you_mean(str(value), rule.choices) if rule.choices and isinstance(value, str) else ""
        found.append(f"{key}={value!r} must be {rule.words}.{hint}")
    return found


def check_values(cfg) -> None:
    """Raise one ConfigError listing every value of `cfg` outside what its key accepts; then one
    for a device this machine lacks (utils.runtime.resolve_device), before any data work."""
    found = problems(cfg)
    if found:
        raise ConfigError("Invalid config value" + ("s: " if len(found) > 1 else ": ") + " ".join(found))
    if "device" in cfg:
        resolve_device(cfg["device"])


def warnings_for(cfg) -> list:
    """Notes on valid settings that are probably unintended (one sentence each)."""
    train, notes = cfg.get("train", {}), []
    warmup, epochs = train.get("warmup_epochs"), train.get("epochs")
    if _is_number(warmup) and _is_int(epochs) and warmup >= epochs > 0:
        notes.append(f"train.warmup_epochs={warmup} is not shorter than train.epochs={epochs}: the lr rises for "
                     f"the whole run, never reaches its configured value and never decays.")
    return notes


# Mixup / CutMix (executors/tools/mixing.py) and test-time augmentation (executors/tools/tta.py, TTA_MODES).
RULES.update({
    "train.mixup_alpha": number(0),
    "train.cutmix_alpha": number(0),
    "train.mix_prob": number(0, 1, optional=True),
    "train.mix_switch_prob": number(0, 1, optional=True),
    "eval.tta": one_of("none", "flip", "flip_crops"),
    "eval.batch_size": whole(1, optional=True),
})
