"""Compare finished runs: one row per run directory holding a summary.json, one ranking per dataset.

Accuracies of different datasets are not comparable, so runs are grouped by dataset (the
summary's "dataset", else data.name of the run's config.json) and ranked within each group,
best final test accuracy first. The learning rate (as the optimizer used it, after
train.lr_scaling) and the batch size come from config.json.
"""
import fnmatch
import json
from pathlib import Path

from easydict import EasyDict

from executors.optim import resolve_lr
from utils.errors import UserError, did_you_mean

UNKNOWN_DATASET = "unknown dataset"
# (row key, column title, format of a number in that column)
COLUMNS = [("run", "run", None), ("model_name", "model", None), ("trainable_parameters", "parameters", ","),
           ("lr", "lr", ".4g"), ("batch_size", "batch", ","),
           ("epochs_completed", "epochs", ","), ("best_test_accuracy", "best acc", ".4f"),
           ("best_epoch", "best epoch", ","), ("final_test_accuracy", "final acc", ".4f"),
           ("final_test_balanced_accuracy", "final bal. acc", ".4f"), ("final_test_loss", "final loss", ".4f"),
           ("train_images_per_second", "train img/s", ",.0f"), ("wall_time_seconds", "wall s", ",.0f")]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path} cannot be read ({error}): remove the run directory or fix the file.") from None


def _training_settings(run_dir: Path) -> dict:
    """dataset, seed, lr, batch_size and data_root (the data folder's name) from the run's
    config.json (None where it has none)."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    cfg = EasyDict(_read_json(path))
    train = cfg.get("train") or EasyDict()
    data = cfg.get("data") or EasyDict()
    settings = {"dataset": data.get("name"), "seed": cfg.get("seed"), "batch_size": train.get("batch_size"),
                "data_root": Path(data.root).name if data.get("root") else None}
    try:
        settings["lr"] = resolve_lr(train)
    except (AttributeError, KeyError, TypeError, ValueError):
        settings["lr"] = None
    return settings


def collect_summaries(exp_dir) -> list:
    """summary.json of every run under `exp_dir` with "run" (the directory's name), "path" (the
    directory), "dataset", "seed", "lr", "batch_size" and "data_root" added."""
    rows = []
    for path in sorted(Path(exp_dir).glob("*/summary.json")):
        settings = _training_settings(path.parent)
        summary = _read_json(path)
        row = {**settings, "run": path.parent.name, "path": path.parent, **summary}
        row["dataset"] = summary.get("dataset") or settings.get("dataset") or UNKNOWN_DATASET
        rows.append(row)
    return rows


def select_dataset(rows, dataset) -> list:
    """The rows of one dataset; UserError naming the datasets present when it has none."""
    chosen = [row for row in rows if row["dataset"] == dataset]
    if not chosen:
        present = sorted({row["dataset"] for row in rows})
        raise UserError(f"No finished runs of dataset '{dataset}'; the runs here are of: {', '.join(present)}."
                        f"{did_you_mean(dataset, present)}")
    return chosen


def filter_runs(rows, patterns) -> list:
    """The rows whose run directory name matches one of the globs `patterns` (e.g.
    ['mlp_lr*', 'mlp_bs*']); UserError naming the runs present when none does."""
    chosen = [row for row in rows if any(fnmatch.fnmatchcase(row["run"], p) for p in patterns)]
    if not chosen:
        names = sorted(row["run"] for row in rows)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise UserError(f"--filter {' '.join(patterns)} matches no finished run; the runs are: {shown}.")
    return chosen


def _cell(value, number_format):
    if value is None:
        return ""
    return format(value, number_format) if number_format else str(value)


def markdown_table(rows) -> str:
    """A Markdown table of the runs, best final accuracy first."""
    rows = sorted(rows, key=lambda r: -(r.get("final_test_accuracy") or 0))
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(key), fmt) for key, _, fmt in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def comparison(rows) -> str:
    """One table for runs of a single dataset; otherwise a '## DATASET (N runs)' heading and a
    table per dataset, in name order."""
    datasets = sorted({row["dataset"] for row in rows})
    if len(datasets) == 1:
        return markdown_table(rows)
    parts = []
    for dataset in datasets:
        group = [row for row in rows if row["dataset"] == dataset]
        parts.append(f"## {dataset} ({len(group)} run{'s' if len(group) > 1 else ''})\n\n{markdown_table(group)}")
    return "\n\n".join(parts)
