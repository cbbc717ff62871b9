"""What the LR range test (executors/tools/lr_finder.py) leaves behind: lr_find.json, lr_find.png
and the lines it prints.

The figure plots the loss of each step (faint) and its smoothed curve against the lr on a log
axis, with the suggested lr as a labelled vertical line, the other method's suggestion as a
dotted one and the lr the config trains at (after linear scaling) as a dash-dotted one. The
y axis spans the smoothed curve: raw losses of the exploding last steps are cut at its top
rather than squashing the rest.
"""
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from utils.atomic_files import save_figure_atomic, write_text_atomic

JSON_NAME, FIGURE_NAME = "lr_find.json", "lr_find.png"
DPI = 100


def lr_find_figure(record: dict) -> Figure:
    """Loss against lr (log axis) of a find_lr record: "lrs", "losses", "smoothed" (lists of
    equal length; losses in nats per image), "suggestions" ({method: lr}), "method" (the
    chosen one), "config_lr", "beta", "exp_name", "batch_size", "steps"."""
    figure = Figure(figsize=(7.5, 4.5), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    lrs, smoothed = record["lrs"], record["smoothed"]
    axes.plot(lrs, record["losses"], color="C0", alpha=0.3, linewidth=1, label="loss of each step")
    axes.plot(lrs, smoothed, color="C0", linewidth=2, label=f"smoothed (EMA, beta {record['beta']})")
    for name, lr in record["suggestions"].items():
        chosen = name == record["method"]
        axes.axvline(lr, color="C3" if chosen else "0.4", linestyle="--" if chosen else ":",
                     label=f"{'suggested' if chosen else 'also'}: {lr:.3g} ({name})")
    axes.axvline(record["config_lr"], color="C2", linestyle="-.", label=f"the config's lr: {record['config_lr']:.3g}")
    finite = [value for value in smoothed + record["losses"] if math.isfinite(value)]
    top = max(value for value in smoothed if math.isfinite(value))
    axes.set_ylim(0.95 * min(finite), top + 0.05 * (top - min(finite)))
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss (nats per image)")
    axes.set_title(f"LR range test: {record['exp_name']}, batch {record['batch_size']}, "
                   f"{len(lrs)} of {record['steps']} steps")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return figure


def _finite_or_none(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def write_lr_find(record: dict, out_dir) -> tuple:
    """Write `record` as out_dir/lr_find.json (non-finite losses as null) and its figure as
    out_dir/lr_find.png, each atomically (utils/atomic_files.py); returns their paths."""
    out_dir = Path(out_dir)
    plain = {key: [_finite_or_none(v) for v in value] if isinstance(value, list) else value
             for key, value in record.items()}
    json_path, figure_path = out_dir / JSON_NAME, out_dir / FIGURE_NAME
    write_text_atomic(json_path, json.dumps(plain, indent=1, allow_nan=False) + "\n")
    save_figure_atomic(lr_find_figure(record), figure_path, dpi=DPI)
    return json_path, figure_path


def summary_lines(record: dict) -> list:
    """What the test found, for a person: the stop, both suggestions, the config's lr and the
    --set that gives the suggestion (for a linearly scaled lr, the base lr's)."""
    smoothed = record["smoothed"]
    peak = max(smoothed[int(np.argmin(smoothed)):]) / min(smoothed)
    lines = [f"stopped early: {record['stopped']}" if record["stopped"] else
             f"ran all {record['steps']} steps: the smoothed loss stayed below {record['divergence']:g}x its lowest "
             f"(at most {peak:.2f}x after it); a higher --end-lr may show where it blows up"]
    if not record["falling"]:
        lines.append("warning: the smoothed loss never fell in the window the suggestions read: they mean little")
    others = ", ".join(f"{name} {lr:.3g}" for name, lr in record["suggestions"].items() if name != record["method"])
    lines.append(f"suggested lr: {record['suggestion']:.3g} ({record['method']}; {others}); "
                 f"the config trains at {record['config_lr']:.3g}")
    key, value = record["setting"]["key"], record["setting"]["value"]
    if key != "train.lr":
        lines.append(f"the config scales its lr with the batch: base lr {value:.3g} gives {record['suggestion']:.3g} "
                     f"at batch {record['batch_size']}")
    lines.append(f"to train at it: --set {key}={value:.3g}")
    return lines
