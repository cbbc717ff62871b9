"""Load experiment configs and apply `--set KEY=VALUE` overrides with validation.

A config is a module `configs/<name>_cfg.py` exposing `cfg`, an EasyDict. Overrides use
dotted keys (`train.lr=0.05`, `data.md5=None`); values parse as Python literals, else as
strings. Unknown keys, values of the wrong type and values outside their range
(utils/validation.py) raise ConfigError before any work starts.
"""
import ast
import copy
import difflib
import importlib.util
import os
from pathlib import Path

from easydict import EasyDict

from utils.errors import ConfigError, did_you_mean
from utils.urls import HIDDEN, redact_url
from utils.validation import check_values

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
_SUFFIX = "_cfg.py"


def available_configs():
    """Names accepted by `--cfg`, sorted."""
    return sorted(p.name[: -len(_SUFFIX)] for p in CONFIGS_DIR.glob("*" + _SUFFIX))


def load_config(name, overrides=()):
    """Return a deep copy of `configs/<name>_cfg.py:cfg` with `overrides` applied, every
    value checked (utils.validation.check_values) and its paths made absolute.

    `name` may also be the path of a `.py` file that defines `cfg`.
    """
    path = Path(name) if name.endswith(".py") else CONFIGS_DIR / f"{name}{_SUFFIX}"
    if not path.is_file():
        hint = did_you_mean(name, available_configs())
        raise ConfigError(
            f"No config named '{name}' (looked for {path}).{hint} "
            f"Available configs: {', '.join(available_configs())}."
        )
    module_name = f"configs.{path.stem}" if path.parent == CONFIGS_DIR else path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "cfg", None), dict):
        raise ConfigError(f"Config file {path} does not define a dict named `cfg`.")
    cfg = EasyDict(copy.deepcopy(module.cfg))
    apply_overrides(cfg, overrides)
    check_values(cfg)
    make_paths_absolute(cfg)
    return cfg


PATH_KEYS = ("exp_dir", "data.root", "data.cache_dir")
_SQLITE = "sqlite:///"


def make_paths_absolute(cfg) -> None:
    """Resolve the config's paths (PATH_KEYS, `~` expanded, and a relative sqlite:/// tracking
    URI) against the working directory, in place: the saved config then works from anywhere
    (evaluate.py started in another folder)."""
    for key in PATH_KEYS:
        parent, leaf = _find_parent(cfg, key)
        if parent is not None and isinstance(parent[leaf], str) and parent[leaf]:
            parent[leaf] = os.path.abspath(os.path.expanduser(parent[leaf]))
    uri = cfg.get("logger", {}).get("tracking_uri")
    if isinstance(uri, str) and uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        cfg.logger.tracking_uri = _SQLITE + os.path.abspath(os.path.expanduser(uri[len(_SQLITE):]))


def parse_value(text):
    """`'0.1'` -> 0.1, `'[1, 2]'` -> [1, 2], `'None'` -> None, `'adam'` -> 'adam'."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def dotted_keys(tree, prefix=""):
    """All dotted keys of a nested dict, leaves and inner nodes alike."""
    keys = []
    for key, value in tree.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, dict):
            keys.extend(dotted_keys(value, full + "."))
    return keys


# Names other libraries use for a key of ours (last dotted component), for "did you mean".
SYNONYMS = {
    "lr": ("learning_rate", "learningrate", "lr_rate", "base_lr", "eta", "step_size"),
    "epochs": ("epoch", "n_epochs", "num_epochs", "max_epochs", "nepochs", "epoch_count"),
    "batch_size": ("bs", "batch", "batchsize", "mini_batch_size", "train_batch_size"),
    "weight_decay": ("wd", "decay", "l2", "weightdecay", "l2_reg"),
    "num_workers": ("workers", "n_workers", "num_worker", "nworkers", "dataloader_workers"),
    "optimizer": ("optim", "opt", "optimiser", "solver"),
    "scheduler": ("sched", "lr_scheduler", "schedule", "lr_schedule", "lr_policy"),
    "warmup_epochs": ("warmup", "warm_up", "warmup_steps", "warmup_iters", "n_warmup"),
    "label_smoothing": ("smoothing", "label_smooth", "ls", "smooth"),
    "amp": ("mixed_precision", "precision", "fp16", "bf16", "autocast", "half"),
    "grad_clip_norm": ("clip", "grad_clip", "clip_grad_norm", "max_grad_norm", "clip_norm", "gradient_clipping"),
    "root": ("data_dir", "data_root", "dataset_dir", "path", "data_path", "dataset_root"),
    "exp_dir": ("output_dir", "out_dir", "log_dir", "save_dir", "runs_dir", "outdir", "logdir", "run_dir"),
    "exp_name": ("run_name", "experiment_name", "name"),
    "model_name": ("model", "arch", "architecture", "network", "net"),
    "device": ("gpu", "cuda", "accelerator"),
    "seed": ("random_seed", "rng_seed", "manual_seed"),
    "threads": ("num_threads", "n_threads", "torch_threads"),
    "backend": ("tracker", "logger", "logging"),
    "val_fraction": ("val_split", "validation_split", "val_ratio", "holdout", "val_size", "valid_fraction"),
    "no_bias_decay": ("bias_decay", "nobiasdecay"),
    "compile": ("torch_compile", "jit"),
}


def similar_keys(key: str, keys, n: int = 3) -> list:
    """Up to `n` dotted `keys` the user may have meant by the unknown `key`: those whose last
    component is `key`'s last component or a known synonym of it (learning_rate -> lr) or
    spelled closely; failing those, keys spelled closely to the whole of `key`."""
    last = key.rsplit(".", 1)[-1].lower()
    by_last = {}
    for candidate in keys:
        by_last.setdefault(candidate.rsplit(".", 1)[-1].lower(), []).append(candidate)
    meant = [name for name, aliases in SYNONYMS.items() if last == name or last in aliases]
    meant += difflib.get_close_matches(last, list(by_last), n=n, cutoff=0.75)
    found = [candidate for name in meant  # of keys named alike (train.batch_size, eval.batch_size) train's first
             for candidate in sorted(by_last.get(name, []), key=lambda dotted: not dotted.startswith("train."))]
    found = found or difflib.get_close_matches(key, list(keys), n=n, cutoff=0.6)
    return list(dict.fromkeys(found))[:n]


def _find_parent(cfg, dotted_key):
    """Return (parent dict, key) for `dotted_key`; keys may themselves contain dots."""
    node, rest = cfg, dotted_key
    while True:
        if not isinstance(node, dict):
            return None, None
        if rest in node:
            return node, rest
        heads = [k for k in node if rest.startswith(f"{k}.")]
        if not heads:
            return None, None
        head = max(heads, key=len)
        node, rest = node[head], rest[len(head) + 1:]


def _check_type(key, old, new):
    """Return `new` converted to the type of `old`, or raise ConfigError."""
    if old is None or new is None:
        return new
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) and isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, int):
        return float(new)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return type(old)(new)
    elif isinstance(old, dict) and isinstance(new, dict):
        return EasyDict(new)
    elif isinstance(new, type(old)):
        return new
    raise ConfigError(
        f"Config key '{key}' expects a value of type {type(old).__name__} "
        f"(current value {old!r}), got {new!r} of type {type(new).__name__}."
    )


def apply_overrides(cfg, overrides):
    """Apply `KEY=VALUE` strings to `cfg` in place."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"Override '{item}' is not of the form KEY=VALUE (e.g. train.lr=0.05).")
        parent, leaf = _find_parent(cfg, key)
        if parent is None:
            close = similar_keys(key, dotted_keys(cfg))
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"Unknown config key '{key}'.{hint}")
        parent[leaf] = _check_type(key, parent[leaf], parse_value(text.strip()))


def to_plain(value):
    """Nested EasyDict/tuple config -> plain dicts and lists (JSON- and torch.load-safe)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


SECRET_KEY_WORDS = ("token", "password", "passwd", "secret", "api_key", "apikey", "access_key", "private_key",
                    "credential")


def is_secret_key(key) -> bool:
    """Whether a config key (any part of a dotted key) names a secret: token, password, ..."""
    return any(word in str(key).lower() for word in SECRET_KEY_WORDS)


def redact(value, secret_values=()):
    """A copy of a plain config tree (to_plain) that is safe to write down: the value of every
    key naming a secret becomes HIDDEN (None stays None), passwords in URLs
    (scheme://user:password@host) become HIDDEN, and so does every string that contains one
    of `secret_values` (e.g. the Neptune API token)."""
    if isinstance(value, dict):
        return {key: (HIDDEN if is_secret_key(key) and item is not None else redact(item, secret_values))
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secret_values) for item in value]
    if isinstance(value, str):
        if any(secret and secret in value for secret in secret_values):
            return HIDDEN
        return redact_url(value)
    return value
