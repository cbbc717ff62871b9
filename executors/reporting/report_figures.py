"""The figures of a run-comparison report: curves of several configs with their seeds, and
final accuracies as bars with their spread.

One colour per config from tab10; from the 11th config on the colours repeat with dashed,
then dotted lines (hatched bars). The legend sits outside the plot, right of it, so 10
curves never hide one another's ends.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from utils.atomic_files import write_atomic  # noqa: E402

FIGURE_SIZE = (10, 5.5)  # inches; saved at DPI with the legend outside


LINE_STYLES, HATCHES = ("-", "--", ":"), ("", "//", "..")


def config_styles(count: int) -> list:
    """(colour, line style, bar hatch) for each of `count` configs, distinct up to 30."""
    palette = matplotlib.colormaps["tab10"]
    return [(palette(i % 10), LINE_STYLES[i // 10 % 3], HATCHES[i // 10 % 3]) for i in range(count)]


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the window - 1 before it (fewer at the start), same length."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def mean_band(curves: list) -> tuple:
    """(mean, std) per point over runs' curves (1-D arrays), cut to the shortest; std is the
    sample standard deviation, zeros for a single run."""
    length = min(len(curve) for curve in curves)
    stacked = np.stack([np.asarray(curve[:length], dtype=np.float64) for curve in curves])
    std = stacked.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(length)
    return stacked.mean(axis=0), std


def _finish(figure, axes, title: str, xlabel: str, ylabel: str):
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small")
    figure.tight_layout()
    return figure


def curves_figure(groups: list, title: str, xlabel: str, ylabel: str, log_y: bool = False):
    """Curves of several configs on one axes.

    groups: [(label, [(x, y), ...] one pair of equal-length 1-D arrays per run)]. A config
    with several runs is drawn as its mean line with a +-1 std band and each run faint
    beneath; its label gets "(n seeds)", and "mean up to <xlabel> X" when its runs differ in
    length (the mean stops at the shortest). x values are counts (epochs, steps): the x axis
    has whole-number ticks. log_y: a logarithmic y axis (positive values).
    """
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    for (label, runs), (colour, style, _) in zip(groups, config_styles(len(groups))):
        mean, std = mean_band([y for _, y in runs])
        x = np.asarray(runs[0][0][:len(mean)])
        if len(runs) > 1:
            for run_x, run_y in runs:
                axes.plot(run_x, run_y, color=colour, linestyle=style, linewidth=0.6, alpha=0.3)
            axes.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        if len(runs) > 1:
            cut = f", mean up to {xlabel} {x[-1]:g}" if len({len(y) for _, y in runs}) > 1 else ""
            label = f"{label} ({len(runs)} seeds{cut})"
        axes.plot(x, mean, color=colour, linestyle=style, linewidth=1.8, label=label)
    if log_y:
        axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(figure, axes, title, xlabel, ylabel)


def final_accuracy_figure(groups: list, title: str, xlabel: str):
    """Horizontal bars, one per config, top to bottom in the given order: the mean of the
    runs' values (in %), a +-1 std error bar, and a dot per run. The axis starts just below
    the lowest run (said in the axis label), so that gaps of a point stay visible.

    groups: [(label, [value per run])].
    """
    height = max(2.5, 0.45 * len(groups) + 1.5)
    figure, axes = plt.subplots(figsize=(FIGURE_SIZE[0], height))
    styles = config_styles(len(groups))
    positions = np.arange(len(groups))[::-1]
    for position, (label, values), (colour, _, hatch) in zip(positions, groups, styles):
        values = 100 * np.asarray(values, dtype=np.float64)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        axes.barh(position, values.mean(), color=colour, alpha=0.6, hatch=hatch, xerr=std, capsize=4,
                  label=f"{label}: {values.mean():.2f}" + (f" ± {std:.2f}" if len(values) > 1 else ""))
        axes.scatter(values, np.full(len(values), position), color="black", s=12, zorder=3)
    axes.set_yticks(positions, [label for label, _ in groups])
    lowest = min(100 * min(values) for _, values in groups)
    start = max(0.0, lowest - 0.15 * (100 - lowest) - 1)
    axes.set_xlim(start, 100)
    return _finish(figure, axes, title, f"{xlabel} (axis starts at {start:.1f})" if start else xlabel, "")


def save(figure, path) -> None:
    """Write `figure` as PNG at `path` atomically (legend included) and free it."""
    try:
        write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(figure)
