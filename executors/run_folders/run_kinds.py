"""Real, quick and smoke runs, kept apart so that one is never taken for another.

* real: the config as it is, in exp_dir (e.g. `/kaggle/working/runs/`);
* quick: the real data at QUICK_SIZE px for QUICK_EPOCHS epochs, in `runs_quick/` next to
  exp_dir, its exp_name suffixed `_quick`: a check of the real pipeline in minutes;
* smoke: on the CPU with a tiny model (SMOKE_MODELS) at SMOKE_SIZE px (meant for tiny
  synthetic data, datasets/synthetic.py), in `runs_smoke/` next to exp_dir, its exp_name
  suffixed `_smoke`: a check of the code alone.

So a real run never resumes a smoke run's tiny model, and an earlier session's real runs are
the only ones brought back (executors/run_folders/earlier_runs.py searches `runs/` alone).
The user's overrides win over a kind's settings, but not over its folder and name.
"""
from pathlib import Path

from utils.config import load_config

REAL_RUNS = "runs"
KINDS = {"real": (REAL_RUNS, ""), "quick": ("runs_quick", "_quick"), "smoke": ("runs_smoke", "_smoke")}
QUICK_SIZE, QUICK_EPOCHS = 64, 2
SMOKE_SIZE, SMOKE_EPOCHS, SMOKE_BATCH = 32, 2, 8
SMOKE_MODELS = {"ResNet50": {"layers": [1, 1, 1, 1], "width": 8},
                "VGG16": {"conv_blocks": [(8, 1), (16, 1), (32, 1), (32, 1), (32, 1)], "classifier_width": 64}}
TEST_RESIZE = 8 / 7  # Resize(256) before CenterCrop(224), as the assignment's test pipeline


def kind_of(smoke: bool, quick: bool) -> str:
    """"smoke", "quick" or "real" (a smoke test wins over a quick run)."""
    return "smoke" if smoke else "quick" if quick else "real"


def runs_folder(exp_dir, kind: str) -> Path:
    """Where runs of `kind` go: `exp_dir` itself for real runs, else `runs_quick` or `runs_smoke` next to it."""
    return Path(exp_dir) if kind == "real" else Path(exp_dir).with_name(KINDS[kind][0])


def sized_transforms(cfg, size: int) -> list:
    """The config's own train and test transforms with their crops at `size` px (the test
    Resize at TEST_RESIZE times that), everything else (jitter, mean, std) kept."""
    sizes = {"RandomResizedCrop": size, "CenterCrop": size, "Resize": round(size * TEST_RESIZE)}
    overrides = []
    for split in ("train", "test"):
        steps = [(name, {**args, "size": sizes[name]} if name in sizes else dict(args))
                 for name, args in cfg.data.transforms[split]]
        overrides.append(f"data.transforms.{split}={steps!r}")
    return overrides


def kind_settings(cfg, kind: str) -> list:
    """The `--set` strings that make `cfg` a `kind` run (none for a real one), built from its
    own model and transforms."""
    if kind == "quick":
        return [f"train.epochs={QUICK_EPOCHS}", *sized_transforms(cfg, QUICK_SIZE)]
    if kind == "smoke":
        model = {**cfg.model, **SMOKE_MODELS.get(cfg.model_name, {})}
        return ["device='cpu'", "data.num_workers=0", f"train.epochs={SMOKE_EPOCHS}", f"train.batch_size={SMOKE_BATCH}",
                *sized_transforms(cfg, SMOKE_SIZE), f"model={model!r}"]
    return []


def kind_config(name: str, kind: str, overrides=()):
    """The config `name` as a `kind` run: its kind_settings, then `overrides` (which win), then
    its runs folder (runs_folder) and exp_name suffix. ConfigError for a bad name or override."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    cfg = load_config(name, overrides)
    if kind != "real":
        cfg = load_config(name, [*kind_settings(cfg, kind), *overrides])
        cfg.exp_dir, cfg.exp_name = str(runs_folder(cfg.exp_dir, kind)), cfg.exp_name + KINDS[kind][1]
    return cfg
