"""Statistics over repeated runs: runs grouped into configs, mean and spread over seeds, and
whether a gap between two configs is larger than their spread.

A run belongs to the config named by its exp_name without the `_seed<k>` suffix that
scripts/sweep.py adds, within its dataset. The spread is the sample standard deviation over
seeds (n - 1 in the denominator); with one seed it is unknown (None). Two configs are told
apart only when the gap between their means is larger than the sum of their standard
deviations, i.e. when the mean +- std intervals do not overlap: with 3 seeds that is a
rough, deliberately cautious rule, not a significance test.

One run per (config, seed): when a config was trained again with the same seed, the run with
the most completed epochs is kept (ties: the newest), so a short rerun never replaces a full
run; the report names the runs left out and why. The runs kept may still differ in length
(configs trained for different epochs, or an interrupted seed): the report then says so.
"""
import math
import re
import statistics
from pathlib import Path

SEED_SUFFIX = re.compile(r"_seed\d+$")


def config_name(row: dict) -> str:
    """The config a run belongs to: its exp_name (else its directory name) without `_seed<k>`."""
    return SEED_SUFFIX.sub("", row.get("exp_name") or row["run"])


def mean_std(values) -> tuple:
    """(mean, sample standard deviation) of the values that are not None or NaN; (None, None)
    without any, (mean, None) with one."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def one_run_per_seed(rows: list) -> tuple:
    """(kept, left_out): of several finished runs of one config with the same seed (a config
    trained again), the one with the most completed epochs is kept, and of those the one whose
    summary.json is newest; left_out is [(row, the kept row it gave way to)], in `rows` order.
    A shorter rerun (a quick check) never replaces a full run silently."""
    kept = {}
    for row in rows:
        key = (row["dataset"], config_name(row), row.get("seed"))
        if key not in kept or _preference(row) > _preference(kept[key]):
            kept[key] = row
    winner = {id(row): kept[(row["dataset"], config_name(row), row.get("seed"))] for row in rows}
    return ([row for row in rows if winner[id(row)] is row],
            [(row, winner[id(row)]) for row in rows if winner[id(row)] is not row])


def _preference(row: dict) -> tuple:
    """(completed epochs, time summary.json was written): larger is kept."""
    finished_at = (Path(row["path"]) / "summary.json").stat().st_mtime if row.get("path") else 0.0
    return row.get("epochs_completed") or 0, finished_at


def _span(values) -> str:
    """'40' when all equal, '10-40' otherwise."""
    values = sorted({v for v in values if v is not None})
    return "" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def config_statistics(rows: list) -> list:
    """One dict per (dataset, config): "dataset", "config", "runs" (the rows, by seed), "seeds",
    "parameters", "epochs" (text), (mean, std) pairs for final_test_accuracy,
    best_test_accuracy (at the selected epoch), final_val_accuracy, final_test_loss, and the
    means of wall_time_seconds and train_images_per_second. In first-seen order."""
    groups = {}
    for row in rows:
        groups.setdefault((row["dataset"], config_name(row)), []).append(row)
    stats = []
    for (dataset, config), runs in groups.items():
        runs = sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed") or 0, r["run"]))
        entry = {"dataset": dataset, "config": config, "runs": runs, "seeds": [r.get("seed") for r in runs],
                 "parameters": runs[0].get("trainable_parameters"),
                 "epochs": _span(r.get("epochs_completed") for r in runs)}
        for key in ("final_test_accuracy", "best_test_accuracy", "final_val_accuracy", "final_test_loss"):
            entry[key] = mean_std(r.get(key) for r in runs)
        for key in ("wall_time_seconds", "train_images_per_second"):
            entry[key] = mean_std(r.get(key) for r in runs)[0]
        stats.append(entry)
    return stats


def selection_key(stats: list) -> str:
    """"final_val_accuracy" when every config of `stats` has a validation accuracy (the choice
    is made on it), else "final_test_accuracy"."""
    has_val = all(entry["final_val_accuracy"][0] is not None for entry in stats)
    return "final_val_accuracy" if has_val else "final_test_accuracy"


def ranked(stats: list) -> list:
    """`stats` of one dataset, best first on selection_key (ties keep their order)."""
    key = selection_key(stats)
    return sorted(stats, key=lambda entry: -entry[key][0])


def spread(best: tuple, other: tuple):
    """The sum of the two (mean, std) pairs' standard deviations; None when one is unknown."""
    return None if best[1] is None or other[1] is None else best[1] + other[1]


def gap_verdict(best: tuple, other: tuple) -> str:
    """Whether `other` (mean, std) is told apart from `best` (mean, std): "larger than the
    spread", "within the spread", or "one seed: spread unknown"."""
    limit = spread(best, other)
    if limit is None:
        return "one seed: spread unknown"
    return "larger than the spread" if abs(best[0] - other[0]) > limit else "within the spread"
