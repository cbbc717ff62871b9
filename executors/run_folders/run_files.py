"""The text files of a run directory (config.json, metrics.csv, steps.csv, summary.json) and
the tracker run that goes with them.

metrics.csv has one row per epoch with METRIC_COLUMNS (a contract: new columns are added at
the end only); steps.csv one row per training step with STEP_COLUMNS (the curves of
scripts/compare_runs.py --report); summary.json holds the keys listed in DESIGN.md section 5.
"""
import contextlib
import json

from logs.Logger import TRACKER_FILE, Logger, public_config
from utils.atomic_files import write_text_atomic

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                  "test_balanced_accuracy", "epoch_seconds", "train_images_per_second", "skipped_steps",
                  "val_loss", "val_accuracy", "val_balanced_accuracy")
STEP_COLUMNS = ("step", "epoch", "lr", "loss")


def epoch_row(epoch: int, lr: float, train: dict, test: dict, wall_seconds: float, val: dict = None) -> dict:
    """The history row (METRIC_COLUMNS) of 0-based `epoch`: `lr` at its start, `train` as
    Trainer.train_epoch returns it, `test` and `val` (None without a validation split) as
    evaluate_model, `wall_seconds` in all."""
    val = val or {}
    return {"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "test_balanced_accuracy": test["balanced_accuracy"], "epoch_seconds": wall_seconds,
            "train_images_per_second": train["images"] / train["seconds"],
            "skipped_steps": train["skipped_steps"], "val_loss": val.get("loss"),
            "val_accuracy": val.get("accuracy"), "val_balanced_accuracy": val.get("balanced_accuracy")}


def tracker_metrics(row: dict) -> dict:
    """What the tracker logs at the end of an epoch: test/*, val/* (when validating) and
    train/epoch_* values of a history row."""
    names = {"test/loss": "test_loss", "test/accuracy": "test_accuracy",
             "test/balanced_accuracy": "test_balanced_accuracy", "val/loss": "val_loss",
             "val/accuracy": "val_accuracy", "val/balanced_accuracy": "val_balanced_accuracy",
             "train/epoch_loss": "train_loss", "train/epoch_accuracy": "train_accuracy",
             "train/skipped_steps": "skipped_steps"}
    return {name: row[column] for name, column in names.items() if row.get(column) is not None}


def metrics_csv(history: list) -> str:
    """metrics.csv text: header and one line per history row, floats to 6 significant digits;
    a column that a row lacks or holds None in (no validation split, a row of an older run
    resumed from its checkpoint) stays empty."""
    lines = [",".join(METRIC_COLUMNS)]
    for row in history:
        values = ("" if row.get(column) is None else row[column] for column in METRIC_COLUMNS)
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values))
    return "\n".join(lines) + "\n"


def step_row(epoch: int, step: dict) -> tuple:
    """The steps.csv row (STEP_COLUMNS) of a step read back by StepMetrics during 0-based `epoch`."""
    return step["step"], epoch + 1, step["lr"], step["loss"]


def steps_csv(rows: list) -> str:
    """steps.csv text: header and one line per step_row, floats to 6 significant digits."""
    lines = [",".join(STEP_COLUMNS)] + [f"{step},{epoch},{lr:.6g},{loss:.6g}" for step, epoch, lr, loss in rows]
    return "\n".join(lines) + "\n"


def run_summary(cfg, history: list, final: dict, best_epoch, trainable_parameters: int, device,
                final_val: dict = None) -> dict:
    """summary.json of a run: `history` rows as epoch_row makes them, `final` test metrics and
    `final_val` validation metrics (evaluate_model; None without a validation split), the
    best epoch (1-based) chosen on validation accuracy when there is a validation split
    ("selected_on": "val"), else on test accuracy; best_*_accuracy are that epoch's."""
    speeds = [row["train_images_per_second"] for row in history]
    best = next((row for row in history if row["epoch"] == best_epoch), {})
    return {
        "exp_name": cfg.exp_name, "model_name": cfg.model_name, "dataset": cfg.data.name,
        "epochs_completed": len(history), "best_epoch": best_epoch,
        "best_test_accuracy": best.get("test_accuracy"), "final_test_accuracy": final["accuracy"],
        "final_test_balanced_accuracy": final["balanced_accuracy"], "final_test_loss": final["loss"],
        "trainable_parameters": trainable_parameters,
        "train_images_per_second": sum(speeds) / len(speeds) if speeds else None,
        "wall_time_seconds": sum(row["epoch_seconds"] for row in history), "device": str(device),
        "selected_on": "val" if final_val is not None else "test", "best_val_accuracy": best.get("val_accuracy"),
        "final_val_accuracy": final_val["accuracy"] if final_val else None,
        "final_val_balanced_accuracy": final_val["balanced_accuracy"] if final_val else None,
        "final_val_loss": final_val["loss"] if final_val else None,
    }


@contextlib.contextmanager
def tracked_run(cfg, run_dir, resume_run_id, hyperparameters: dict):
    """The run's Logger (continuing tracker run `resume_run_id`), after writing config.json and
    the tracker record, printing where it is tracked and logging `hyperparameters`; None, with
    nothing written, when `run_dir` is None (torchrun processes other than the main one)."""
    if run_dir is None:
        yield None
        return
    write_text_atomic(run_dir / "config.json", json.dumps(public_config(cfg), indent=2))
    with Logger(cfg.logger, run_dir, run_dir.name, resume_run_id) as logger:
        if logger.run_id is not None:  # a folder abandoned before last.pt can close its tracker run
            write_text_atomic(run_dir / TRACKER_FILE, json.dumps(logger.tracker_record))
        print(logger.location, flush=True)
        logger.log_hyperparameters(hyperparameters)
        yield logger


def write_history(run_dir, history: list, steps: list) -> None:
    """metrics.csv and steps.csv of `run_dir` (see metrics_csv and steps_csv)."""
    write_text_atomic(run_dir / "metrics.csv", metrics_csv(history))
    write_text_atomic(run_dir / "steps.csv", steps_csv(steps))


def write_summary(logger, run_dir, summary: dict) -> None:
    """summary.json, the summary to the tracker, and the run's text files attached to its run."""
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    logger.log_summary(summary)
    for name in ("config.json", "summary.json", "metrics.csv", "steps.csv"):
        logger.log_file(run_dir / name)
