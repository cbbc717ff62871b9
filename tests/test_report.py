"""The run-comparison report: statistics over seeds against numpy, the figures' content and
legibility, report.md, and the --report / --filter command line, on tiny synthetic runs."""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from executors.reporting.compare import collect_summaries, filter_runs
from executors.reporting.report import read_columns, write_report
from executors.reporting.report_figures import (config_styles, curves_figure, final_accuracy_figure, mean_band,
                                                trailing_mean)
from executors.reporting.report_stats import (config_name, config_statistics, gap_verdict, mean_std,
                                              one_run_per_seed, ranked, selection_key)
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(exp_dir, config, seed, final_acc, epochs=3, val=True, dataset="KMNIST", steps=True):
    """A finished run directory as the Trainer writes it, with curves that depend on the seed."""
    run_dir = exp_dir / f"{config}_seed{seed}"
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    test_acc = np.linspace(0.5, final_acc, epochs)
    val_acc = test_acc + 0.01 * rng.standard_normal(epochs)
    lines = ["epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,test_balanced_accuracy,epoch_seconds,"
             "train_images_per_second,skipped_steps,val_loss,val_accuracy,val_balanced_accuracy"]
    for e in range(epochs):
        lines.append(f"{e + 1},0.1,1.0,0.5,{2 - test_acc[e]:.6g},{test_acc[e]:.6g},{test_acc[e]:.6g},1.5,1000,0,"
                     + (f"0.9,{val_acc[e]:.6g},{val_acc[e]:.6g}" if val else ",,"))
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    if steps:
        step_lines = ["step,epoch,lr,loss"] + [f"{s},{1 + (s - 1) // 10},{0.1 * (1 - s / 31):.6g},{3 / s + seed:.6g}"
                                               for s in range(1, 31)]
        (run_dir / "steps.csv").write_text("\n".join(step_lines) + "\n")
    (run_dir / "config.json").write_text(json.dumps(
        {"seed": seed, "data": {"name": dataset, "root": "/data/kmnist-8k2k"},
         "train": {"lr": 0.1, "batch_size": 64, "lr_scaling": None}}))
    summary = {"exp_name": f"{config}_seed{seed}", "model_name": "MLP", "dataset": dataset,
               "epochs_completed": epochs, "best_epoch": epochs, "best_test_accuracy": final_acc,
               "final_test_accuracy": final_acc, "final_test_loss": 2 - final_acc, "trainable_parameters": 1000,
               "train_images_per_second": 1000.0 + seed, "wall_time_seconds": 10.0 * (seed + 1),
               "final_val_accuracy": float(val_acc[-1]) if val else None}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


ACCURACIES = {"wide": [0.90, 0.92, 0.91], "base": [0.88, 0.89, 0.87], "close": [0.905, 0.915, 0.92]}


@pytest.fixture
def runs(tmp_path):
    exp_dir = tmp_path / "runs"
    for config, accuracies in ACCURACIES.items():
        for seed, accuracy in enumerate(accuracies):
            write_run(exp_dir, config, seed, accuracy)
    write_run(exp_dir, "single", 0, 0.80)
    return exp_dir


def test_mean_and_spread_are_numpys_sample_statistics():
    values = [0.91, 0.935, 0.9, None, float("nan")]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values[:3]), abs=1e-15)
    assert std == pytest.approx(np.std(values[:3], ddof=1), abs=1e-15)
    assert mean_std([0.7]) == (0.7, None) and mean_std([None]) == (None, None)


def test_runs_are_grouped_by_config_without_the_seed_suffix(runs):
    assert config_name({"exp_name": "mlp_lr0.01_seed12", "run": "x"}) == "mlp_lr0.01"
    assert config_name({"run": "mlp_seedless"}) == "mlp_seedless"
    stats = {entry["config"]: entry for entry in config_statistics(collect_summaries(runs))}
    assert set(stats) == {"wide", "base", "close", "single"}
    for config, accuracies in ACCURACIES.items():
        entry = stats[config]
        assert entry["seeds"] == [0, 1, 2] and entry["epochs"] == "3" and entry["parameters"] == 1000
        assert entry["final_test_accuracy"] == pytest.approx((np.mean(accuracies), np.std(accuracies, ddof=1)))
        assert entry["final_test_loss"][0] == pytest.approx(2 - np.mean(accuracies))
        assert entry["wall_time_seconds"] == pytest.approx(20.0) and entry["train_images_per_second"] == 1001.0
    assert stats["single"]["final_test_accuracy"] == (0.80, None)


def test_ranking_uses_validation_when_every_run_has_it_and_test_otherwise(runs, tmp_path):
    stats = config_statistics(collect_summaries(runs))
    assert selection_key(stats) == "final_val_accuracy"
    by_val = [entry["config"] for entry in ranked(stats)]
    assert by_val == sorted(by_val, key=lambda c: -statistics.fmean(
        json.loads((runs / f"{c}_seed{s}" / "summary.json").read_text())["final_val_accuracy"]
        for s in ((0,) if c == "single" else (0, 1, 2))))
    write_run(runs, "noval", 0, 0.99, val=False)
    stats = config_statistics(collect_summaries(runs))
    assert selection_key(stats) == "final_test_accuracy" and ranked(stats)[0]["config"] == "noval"


def test_gap_verdicts_compare_the_gap_with_the_sum_of_spreads():
    assert gap_verdict((0.91, 0.01), (0.88, 0.01)) == "larger than the spread"
    assert gap_verdict((0.91, 0.01), (0.895, 0.01)) == "within the spread"
    assert gap_verdict((0.91, 0.01), (0.80, None)) == "one seed: spread unknown"


def rerun(exp_dir, accuracies_epochs, newest_last=True):
    """The config "rerun" trained with seed 0 once per (accuracy, epochs), in directories
    rerun_seed0, rerun_seed0_1, ...; summary.json times increase in that order."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    for index, (accuracy, epochs) in enumerate(accuracies_epochs):
        made = write_run(exp_dir.parent / f"staging{index}", "rerun", 0, accuracy, epochs=epochs)
        run_dir = made.rename(exp_dir / ("rerun_seed0" + (f"_{index}" if index else "")))
        os.utime(run_dir / "summary.json", (2e9 + index, 2e9 + index))


def test_a_config_and_seed_trained_twice_counts_once_the_newest_of_equal_length(runs):
    rerun(runs, [(0.7, 3), (0.5, 3)])
    kept, left_out = one_run_per_seed(collect_summaries(runs))
    assert [(row["run"], used["run"]) for row, used in left_out] == [("rerun_seed0", "rerun_seed0_1")]
    assert [row["final_test_accuracy"] for row in kept if row["run"].startswith("rerun")] == [0.5]


def test_a_shorter_newer_rerun_does_not_replace_the_full_run_and_the_report_says_so(tmp_path):
    exp_dir = tmp_path / "runs"
    rerun(exp_dir, [(0.9, 10), (0.6, 2)])  # the 2-epoch quick check is the newest
    kept, left_out = one_run_per_seed(collect_summaries(exp_dir))
    assert [row["run"] for row in kept] == ["rerun_seed0"] and kept[0]["epochs_completed"] == 10
    assert [(row["run"], used["run"]) for row, used in left_out] == [("rerun_seed0_1", "rerun_seed0")]
    text = write_report(collect_summaries(exp_dir), tmp_path / "report", "x").read_text()
    assert ("Runs left out: a config trained again with the same seed counts once, by its run with the most "
            "completed epochs (of equal ones, the newest): rerun_seed0_1 (2 epochs; rerun_seed0 with 10 epochs "
            "is used).") in text
    row = next(line for line in text.splitlines() if line.startswith("| rerun | 0 |"))
    assert row.startswith("| rerun | 0 | 1,000 | 10 |") and "| 90.00 |" in row and "different lengths" not in text
    curve = read_columns(exp_dir / "rerun_seed0" / "metrics.csv")["test_accuracy"]
    assert len(curve) == 10 and "| rerun_seed0 |" in text and "| rerun_seed0_1 |" not in text


def test_runs_of_different_lengths_are_compared_only_with_a_visible_line(tmp_path):
    exp_dir = tmp_path / "runs"
    write_run(exp_dir, "long", 0, 0.9, epochs=10)
    write_run(exp_dir, "long", 1, 0.91, epochs=10)
    write_run(exp_dir, "short", 0, 0.8, epochs=2)
    write_run(exp_dir, "mixed", 0, 0.85, epochs=10)
    write_run(exp_dir, "mixed", 1, 0.84, epochs=4)  # an interrupted seed
    out = tmp_path / "report"
    text = write_report(collect_summaries(exp_dir), out, "x").read_text()
    assert ("**Runs of different lengths are compared here** (epochs completed: long 10, mixed 4-10, short 2).") in text
    assert "| short | 0 | 1,000 | 2 |" in text and "| mixed | 0,1 | 1,000 | 4-10 |" in text
    same = tmp_path / "same"
    write_run(same, "a", 0, 0.9, epochs=4)
    write_run(same, "b", 0, 0.8, epochs=4)
    assert "different lengths" not in write_report(collect_summaries(same), tmp_path / "r2", "x").read_text()


def test_per_epoch_and_per_step_axes_have_whole_number_ticks():
    for x in (np.arange(1, 3), np.arange(1, 8), np.arange(1, 31)):  # 2 epochs gave ticks at 1.25, 1.5, ...
        figure = curves_figure([("a", [(x, 0.5 + 0.01 * x), (x[:-1], 0.51 + 0.01 * x[:-1])])], "t", "epoch", "acc")
        axes = figure.axes[0]
        figure.canvas.draw()
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        labels = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
        assert all(label.lstrip("−-").isdigit() for label in labels), labels
        legend = [t.get_text() for t in axes.get_legend().get_texts()]
        assert legend == [f"a (2 seeds, mean up to epoch {x[-2]})"]  # the mean stops at the shorter seed
        plt.close(figure)


def test_curve_helpers_match_direct_computation():
    values = np.array([4.0, 2.0, 6.0, 1.0, 3.0])
    expected = [np.mean(values[max(0, i - 2):i + 1]) for i in range(len(values))]
    assert trailing_mean(values, 3) == pytest.approx(expected)
    mean, std = mean_band([np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0])])
    assert mean == pytest.approx([2.0, 3.0]) and std == pytest.approx([np.sqrt(2), np.sqrt(2)])
    assert len({style for style in config_styles(30)}) == 30


@pytest.mark.parametrize("count", [2, 10])
def test_figures_put_one_legend_entry_per_config_outside_the_plot(count):
    x = np.arange(1, 6)
    groups = [(f"config_{i}", [(x, x * 0.01 * i + s * 0.001) for s in range(3)]) for i in range(count)]
    figure = curves_figure(groups, "KMNIST: test accuracy per epoch", "epoch", "accuracy")
    axes = figure.axes[0]
    legend = axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"config_{i} (3 seeds)" for i in range(count)]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= axes.get_window_extent(renderer).x1  # beside, not over
    mean_line = axes.get_lines()[3]  # three faint seed lines, then the mean
    assert mean_line.get_ydata() == pytest.approx(x * 0.0 + 0.001)
    assert axes.get_title() == "KMNIST: test accuracy per epoch"
    plt.close(figure)
    bars = final_accuracy_figure([(f"c{i}", [0.9, 0.91 + 0.001 * i]) for i in range(count)], "t", "test accuracy, %")
    widths = [patch.get_width() for patch in bars.axes[0].patches]
    assert widths == pytest.approx([100 * (0.9 + 0.91 + 0.001 * i) / 2 for i in range(count)])
    assert bars.axes[0].get_xlim()[0] > 80  # starts near the data, said in the label
    assert "axis starts at" in bars.axes[0].get_xlabel()
    plt.close(bars)


def test_report_writes_the_table_gaps_and_figures(runs, tmp_path):
    out = tmp_path / "report"
    path = write_report(collect_summaries(runs), out, "Finished runs under `runs`")
    text = path.read_text()
    assert text.startswith("# Run comparison") and "## KMNIST (kmnist-8k2k)" in text
    wide = ACCURACIES["wide"]
    row = next(line for line in text.splitlines() if line.startswith("| wide | 0,1,2 |"))
    assert f"| {100 * np.mean(wide):.2f} ± {100 * np.std(wide, ddof=1):.2f} |" in row
    assert "| single | 0 | 1,000 | 3 |" in text
    top = text.split("|---|", 1)[1].split("\n| ", 1)[1].split(" |")[0]  # first row of the ranking
    assert top in ("wide", "close")
    base, best = ACCURACIES["base"], ACCURACIES[top]
    base_gap = next(line for line in text.splitlines() if line.startswith("| base | ") and "spread" in line)
    spread = 100 * (np.std(base, ddof=1) + np.std(best, ddof=1))
    assert base_gap == (f"| base | {100 * (np.mean(base) - np.mean(best)):+.2f} | {spread:.2f} | "
                        f"larger than the spread |")
    assert "one seed: spread unknown" in text
    for name in ("kmnist_test_accuracy_per_epoch.png", "kmnist_val_accuracy_per_epoch.png",
                 "kmnist_test_loss_per_epoch.png", "kmnist_loss_per_step.png", "kmnist_lr_per_step.png",
                 "kmnist_final_accuracy.png"):
        assert f"]({name})" in text and (out / name).read_bytes()[:8] == PNG
    assert read_columns(runs / "wide_seed0" / "steps.csv")["loss"][0] == 3.0
    assert "## Every run" in text and text.count("| wide_seed") == 3


def test_gaps_can_be_taken_to_a_named_baseline(runs, tmp_path):
    text = write_report(collect_summaries(runs), tmp_path / "r", "x", baseline="base").read_text()
    wide, base = ACCURACIES["wide"], ACCURACIES["base"]
    assert "minus that of **base**" in text
    assert f"| wide | {100 * (np.mean(wide) - np.mean(base)):+.2f} |" in text
    with pytest.raises(UserError, match="'bse' is not among the configs compared: base, close, single, wide"):
        write_report(collect_summaries(runs), tmp_path / "r2", "x", baseline="bse")
    assert not (tmp_path / "r2").exists()


def test_runs_without_steps_csv_are_left_out_of_the_step_figures_only(tmp_path):
    write_run(tmp_path / "runs", "old", 0, 0.8, steps=False)
    out = tmp_path / "report"
    text = write_report(collect_summaries(tmp_path / "runs"), out, "x").read_text()
    assert "kmnist_test_accuracy_per_epoch.png" in text and "per_step" not in text
    assert not list(out.glob("*per_step.png"))


def test_cli_report_with_several_filters_and_a_filter_that_matches_nothing(runs, tmp_path):
    def script(*args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "compare_runs.py"), "--exp-dir", str(runs),
                               *args], capture_output=True, text=True, cwd=REPO)
    result = script("--filter", "wide_*", "base_*", "--report", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "2 configs, 6 runs" in text and "| close |" not in text
    table = script("--filter", "single*")
    assert table.returncode == 0 and "single_seed0" in table.stdout and "wide" not in table.stdout
    none = script("--filter", "vgg*", "--report", str(tmp_path / "none"))
    assert none.returncode == 2 and "--filter vgg* matches no finished run" in none.stderr
    assert not (tmp_path / "none").exists()
    with pytest.raises(UserError, match="the runs are: base_seed0"):
        filter_runs(collect_summaries(runs), ["nothing"])


def test_runs_with_the_ema_text_column_are_reported(runs, tmp_path):
    """metrics.csv of a run with train.ema_decay ends with `selected_weights` (raw / ema): the
    report reads its numeric columns and leaves the text one out instead of failing."""
    path = runs / "base_seed0" / "metrics.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",ema_test_accuracy,selected_weights"]
                              + [line + f",0.{70 + n},{'ema' if n % 2 else 'raw'}" for n, line in enumerate(lines[1:])])
                    + "\n")
    columns = read_columns(path)
    assert "selected_weights" not in columns and list(columns["ema_test_accuracy"]) == [0.70, 0.71, 0.72]
    text = write_report(collect_summaries(runs), tmp_path / "report", "runs").read_text()
    assert text.count("| base_seed") == 3
