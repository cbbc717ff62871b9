"""Real, quick and smoke runs, kept apart so that one is never taken for another.

* real: the config as it is, in `<work>/runs/`;
* quick: the real data at QUICK_SIZE px for QUICK_EPOCHS epochs, in `<work>/runs_quick/`, its
  exp_name suffixed `_quick`: a check of the real pipeline in minutes;
* smoke: tiny synthetic data on the CPU with a tiny model (SMOKE_MODELS), in
  `<work>/runs_smoke/`, its exp_name suffixed `_smoke`: a check of the code alone.

So a real run never resumes a smoke run's tiny model, and an earlier session's real runs are
the only ones brought back (executors/run_folders/earlier_runs.py searches `runs/` alone).
Each function returns `--set` strings, applied before the user's own overrides.
"""
from pathlib import Path

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


def runs_folder(work_dir, kind: str) -> Path:
    """Where runs of `kind` go: `<work_dir>/runs`, `runs_quick` or `runs_smoke`."""
    return Path(work_dir) / KINDS[kind][0]


def placement(cfg, kind: str, work_dir) -> list:
    """exp_dir and exp_name of a `kind` run of `cfg` (see the module docstring)."""
    return [f"exp_dir={str(runs_folder(work_dir, kind))!r}", f"exp_name={cfg.exp_name + KINDS[kind][1]!r}"]


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


def kind_overrides(cfg, kind: str, work_dir) -> list:
    """Every `--set` string of a `kind` run of `cfg` but the data's location."""
    overrides = placement(cfg, kind, work_dir)
    if kind == "quick":
        overrides += [f"train.epochs={QUICK_EPOCHS}", *sized_transforms(cfg, QUICK_SIZE)]
    elif kind == "smoke":
        model = {**cfg.model, **SMOKE_MODELS.get(cfg.model_name, {})}
        overrides += ["device='cpu'", "data.num_workers=0", f"train.epochs={SMOKE_EPOCHS}",
                      f"train.batch_size={SMOKE_BATCH}", *sized_transforms(cfg, SMOKE_SIZE), f"model={model!r}"]
    return overrides
