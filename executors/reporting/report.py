"""The run-comparison report: `DIR/report.md` and its PNG figures, per dataset.

For each dataset: test accuracy and test loss per epoch (and validation accuracy when every
run has a validation split), training loss per step (trailing mean over 2% of the steps),
lr per step, and final test accuracy per config as bars with their spread; a table of mean
+- std over seeds; and each config's gap to the top one, told apart from noise only when it
is larger than the spread (executors/reporting/report_stats.py). Configs are ranked on validation
accuracy when every run has one (the choice is made there), else on test accuracy; the gaps
are taken to the top config, or to a named baseline config (an ablation: each change
against the base).

Which runs: one per (config, seed). A config trained again with the same seed counts once,
by its run with the most completed epochs (of equal ones, the newest), so a short rerun never
replaces a full run; the report names each run left out and why. When the runs kept differ
in completed epochs (configs trained for different lengths, an interrupted seed), a line
above the table says so and the table's "epochs" column shows each config's range. Epoch
and step axes have whole-number ticks.
"""
import csv
import datetime
import re
from pathlib import Path

import numpy as np

from executors.reporting.compare import markdown_table
from executors.reporting.report_figures import curves_figure, final_accuracy_figure, save, trailing_mean
from executors.reporting.report_stats import (config_statistics, gap_verdict, one_run_per_seed, ranked, selection_key,
                                              spread)
from utils.atomic_files import write_text_atomic
from utils.errors import UserError, did_you_mean

SMOOTHING_SHARE = 0.02  # the training-loss window, as a share of a config's steps


def _cell_value(cell: str) -> float:
    """A CSV cell as a float; NaN for an empty cell."""
    return float(cell) if cell else np.nan


def read_columns(path: Path):
    """{column: float array} of the numeric columns of a CSV file (empty cells as NaN; text
    columns such as metrics.csv's `selected_weights` are left out), None when there is no file."""
    if not path.is_file():
        return None
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    columns = {}
    for column in rows[0].keys() if rows else []:
        try:
            columns[column] = np.array([_cell_value(row[column]) for row in rows])
        except ValueError:
            continue
    return columns


def _mean_std(pair, digits=4, scale=1) -> str:
    """'mean ± std' of a (mean, std) pair times `scale`; the mean alone when std is None."""
    mean, std = pair
    if mean is None:
        return ""
    return f"{scale * mean:.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def _percent(pair) -> str:
    return _mean_std(pair, digits=2, scale=100)


def _number(value, pattern=",.0f") -> str:
    return "" if value is None else format(value, pattern)


def _curve_groups(stats, tables, file_name, x_column, y_column, smooth) -> list:
    """[(config, [(x, y) per run])] for the runs that have `file_name` with `y_column` values;
    `tables` maps (run directory, file name) to read_columns of that file."""
    groups = []
    for entry in stats:
        runs = []
        for row in entry["runs"]:
            columns = tables[Path(row["path"]), file_name]
            if columns and y_column in columns and not np.isnan(columns[y_column]).all():
                runs.append((columns[x_column], columns[y_column]))
        if runs and smooth:
            window = max(1, round(SMOOTHING_SHARE * min(len(y) for _, y in runs)))
            runs = [(x, trailing_mean(y, window)) for x, y in runs]
        if runs:
            groups.append((entry["config"], runs))
    return groups


def _figures(stats, name: str, slug: str, out_dir: Path) -> list:
    """Write the dataset's figures; returns [(caption, file name)]."""
    # caption, file, x column, y column, y label, smoothed and logarithmic
    plots = [("test accuracy per epoch", "metrics.csv", "epoch", "test_accuracy", "accuracy", False),
             ("test loss per epoch", "metrics.csv", "epoch", "test_loss", "cross-entropy", False),
             ("training loss per step (trailing mean over 2% of the steps)", "steps.csv", "step", "loss",
              "cross-entropy on the batch (log scale)", True),
             ("learning rate per step", "steps.csv", "step", "lr", "lr", False)]
    if selection_key(stats) == "final_val_accuracy":
        plots.insert(1, ("validation accuracy per epoch (the model choice is made on it)", "metrics.csv", "epoch",
                         "val_accuracy", "accuracy", False))
    tables = {(Path(row["path"]), file_name): read_columns(Path(row["path"]) / file_name)
              for entry in stats for row in entry["runs"] for file_name in ("metrics.csv", "steps.csv")}
    written = []
    for caption, file_name, x_column, y_column, ylabel, smooth in plots:
        groups = _curve_groups(stats, tables, file_name, x_column, y_column, smooth)
        if not groups:
            continue
        figure_name = f"{slug}_{y_column}_per_{x_column}.png"
        figure = curves_figure(groups, f"{name}: {caption}", x_column, ylabel, log_y=smooth)
        save(figure, out_dir / figure_name)
        written.append((caption, figure_name))
    bars = [(entry["config"], [r["final_test_accuracy"] for r in entry["runs"]]) for entry in stats]
    caption = "final test accuracy (bar: mean, line: ± 1 std, dots: seeds)"
    save(final_accuracy_figure(bars, f"{name}: {caption}", "test accuracy, %"), out_dir / f"{slug}_final_accuracy.png")
    return written + [(caption, f"{slug}_final_accuracy.png")]


def _table(stats) -> str:
    has_val = selection_key(stats) == "final_val_accuracy"
    head = ["config", "seeds", "parameters", "epochs"] + (["val acc %"] if has_val else []) + [
        "test acc %", "test acc % at best.pt" if has_val else "best test acc %", "test loss", "train s", "train img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in stats:
        cells = [entry["config"], ",".join(str(s) for s in entry["seeds"]), _number(entry["parameters"], ","),
                 entry["epochs"]] + ([_percent(entry["final_val_accuracy"])] if has_val else []) + [
            _percent(entry["final_test_accuracy"]), _percent(entry["best_test_accuracy"]),
            _mean_std(entry["final_test_loss"]), _number(entry["wall_time_seconds"]),
            _number(entry["train_images_per_second"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gaps(stats, best: dict) -> str:
    lines = [f"Each config's mean final test accuracy minus that of **{best['config']}** (points), and whether "
             f"the gap is larger than the spread (the sum of the two standard deviations):", "",
             "| config | difference | spread | verdict |", "|---|---|---|---|"]
    for entry in (entry for entry in stats if entry is not best):
        pair, best_pair = entry["final_test_accuracy"], best["final_test_accuracy"]
        limit = spread(best_pair, pair)
        lines.append(f"| {entry['config']} | {100 * (pair[0] - best_pair[0]):+.2f} | "
                     f"{'' if limit is None else f'{100 * limit:.2f}'} | {gap_verdict(best_pair, pair)} |")
    return "\n".join(lines)


def _lengths(stats) -> list:
    """[a paragraph, ""] saying that the runs of `stats` differ in completed epochs and how,
    or [] when they all have the same number."""
    if len({row.get("epochs_completed") for entry in stats for row in entry["runs"]}) < 2:
        return []
    each = ", ".join(f"{entry['config']} {entry['epochs'] or '?'}" for entry in stats)
    return [f"**Runs of different lengths are compared here** (epochs completed: {each}). A run with fewer "
            f"epochs had less training, so its accuracy is not like for like; per-epoch curves of several seeds "
            f"are averaged up to the shortest. Use --filter to compare runs of one length.", ""]


def _dataset_section(dataset: str, stats: list, out_dir: Path, baseline) -> str:
    roots = {row.get("data_root") for entry in stats for row in entry["runs"]}
    name = f"{dataset} ({roots.pop()})" if len(roots) == 1 and None not in roots else dataset
    slug = re.sub(r"[^a-z0-9]+", "_", dataset.lower()).strip("_") or "runs"
    stats = ranked(stats)
    on = "validation" if selection_key(stats) == "final_val_accuracy" else "test"
    runs = sum(len(entry["runs"]) for entry in stats)
    parts = [f"## {name}", "", f"{len(stats)} configs, {runs} runs; ranked on mean final {on} accuracy. "
             f"Values are mean ± sample standard deviation over seeds.", ""] + _lengths(stats) + [_table(stats), ""]
    if len(stats) > 1:
        reference = next((entry for entry in stats if entry["config"] == baseline), stats[0])
        parts += [_gaps(stats, reference), ""]
    for caption, file_name in _figures(stats, name, slug, out_dir):
        parts += [f"![{name}: {caption}]({file_name})", ""]
    return "\n".join(parts)


def _epochs(row) -> str:
    count = row.get("epochs_completed")
    return "epochs unknown" if count is None else f"{count} epoch{'' if count == 1 else 's'}"


def write_report(rows: list, out_dir, source: str, baseline: str = None) -> Path:
    """Write `out_dir`/report.md and its figures for the finished runs `rows` (as
    compare.collect_summaries returns them, with "path"); `source` says where they came
    from (a line of the report); gaps are taken to the config `baseline` (None: the top
    one), a UserError when no dataset has it. Returns the report's path."""
    out_dir = Path(out_dir)
    rows, left_out = one_run_per_seed(rows)
    stats = config_statistics(rows)
    configs = sorted({entry["config"] for entry in stats})
    if baseline is not None and baseline not in configs:
        raise UserError(f"--baseline '{baseline}' is not among the configs compared: {', '.join(configs)}."
                        f"{did_you_mean(baseline, configs)}")
    parts = ["# Run comparison", "", f"{source}; {datetime.date.today().isoformat()}.", ""]
    if left_out:
        parts += ["Runs left out: a config trained again with the same seed counts once, by its run with the most "
                  "completed epochs (of equal ones, the newest): " + "; ".join(
                      f"{row['run']} ({_epochs(row)}{', older' if _epochs(row) == _epochs(kept) else ''}; "
                      f"{kept['run']} with {_epochs(kept)} is used)" for row, kept in left_out) + ".", ""]
    for dataset in sorted({entry["dataset"] for entry in stats}):
        parts.append(_dataset_section(dataset, [e for e in stats if e["dataset"] == dataset], out_dir, baseline))
    parts += ["## Every run", "", markdown_table(rows), ""]
    write_text_atomic(out_dir / "report.md", "\n".join(parts))
    return out_dir / "report.md"
