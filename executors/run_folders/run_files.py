"""The text files of a run directory: metrics.csv, steps.csv and summary.json.

metrics.csv has one row per epoch with METRIC_COLUMNS (a contract: new columns are added at
the end only); steps.csv one row per training step with STEP_COLUMNS (the curves of
scripts/compare_runs.py --report); summary.json holds the keys run_summary writes.
"""
import json

from utils.atomic_files import write_text_atomic

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                  "test_balanced_accuracy", "epoch_seconds", "train_images_per_second", "skipped_steps",
                  "val_loss", "val_accuracy", "val_balanced_accuracy")
EMA_COLUMNS = ("ema_test_loss", "ema_test_accuracy", "ema_test_balanced_accuracy", "ema_val_loss",
               "ema_val_accuracy", "ema_val_balanced_accuracy", "selected_weights")  # with train.ema_decay only
TTA_COLUMNS = ("tta_test_loss", "tta_test_accuracy", "tta_test_balanced_accuracy", "tta_val_loss",
               "tta_val_accuracy", "tta_val_balanced_accuracy")  # with eval.tta other than "none" only
SPLIT_METRICS = ("loss", "accuracy", "balanced_accuracy")
STEP_COLUMNS = ("step", "epoch", "lr", "loss")


def epoch_row(epoch: int, lr: float, train: dict, evaluations: dict, wall_seconds: float) -> dict:
    """The history row (METRIC_COLUMNS, EMA_COLUMNS with an EMA, TTA_COLUMNS with test-time
    augmentation) of 0-based `epoch`: `lr` at its start, `train` as Trainer.train_epoch returns it,
    `evaluations` as Trainer.evaluate_epoch ("test", "val", "ema_test", "ema_val": evaluate_model's
    metrics or None, "test" and "val" with tta_* metrics under TTA; "selected_weights": "raw" or
    "ema", None without an EMA), `wall_seconds` in all."""
    test, val = evaluations["test"], evaluations["val"] or {}
    row = {"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
           "test_loss": test["loss"], "test_accuracy": test["accuracy"],
           "test_balanced_accuracy": test["balanced_accuracy"], "epoch_seconds": wall_seconds,
           "train_images_per_second": train["images"] / train["seconds"],
           "skipped_steps": train["skipped_steps"], "val_loss": val.get("loss"),
           "val_accuracy": val.get("accuracy"), "val_balanced_accuracy": val.get("balanced_accuracy")}
    if evaluations["ema_test"] is not None:
        for split in ("test", "val"):
            metrics = evaluations[f"ema_{split}"] or {}
            row.update({f"ema_{split}_{key}": metrics.get(key) for key in SPLIT_METRICS})
        row["selected_weights"] = evaluations["selected_weights"]
    if "tta_accuracy" in test:
        for split in ("test", "val"):
            metrics = evaluations[split] or {}
            row.update({f"tta_{split}_{key}": metrics.get(f"tta_{key}") for key in SPLIT_METRICS})
    return row


def epoch_notes(row: dict) -> str:
    """What the epoch line adds: with test-time augmentation its test accuracy; with an EMA its
    test accuracy and which weights were better."""
    notes = f" | TTA test acc {row['tta_test_accuracy']:.4f}" if "tta_test_accuracy" in row else ""
    if "selected_weights" in row:
        notes += f" | EMA test acc {row['ema_test_accuracy']:.4f}; {row['selected_weights']} weights better"
    return notes


def tracker_metrics(row: dict) -> dict:
    """What the tracker logs at the end of an epoch: test/*, val/* (when validating; test/tta_*,
    val/tta_* with test-time augmentation), ema_test/*, ema_val/* (with an EMA) and train/epoch_*
    values of a history row."""
    names = {"test/loss": "test_loss", "test/accuracy": "test_accuracy",
             "test/balanced_accuracy": "test_balanced_accuracy", "val/loss": "val_loss",
             "val/accuracy": "val_accuracy", "val/balanced_accuracy": "val_balanced_accuracy",
             "train/epoch_loss": "train_loss", "train/epoch_accuracy": "train_accuracy",
             "train/skipped_steps": "skipped_steps",
             **{f"ema_{split}/{key}": f"ema_{split}_{key}" for split in ("test", "val") for key in SPLIT_METRICS},
             **{f"{split}/tta_{key}": f"tta_{split}_{key}" for split in ("test", "val") for key in SPLIT_METRICS}}
    return {name: row[column] for name, column in names.items() if row.get(column) is not None}


def metrics_csv(history: list) -> str:
    """metrics.csv text: header and one line per history row, floats to 6 significant digits;
    a column that a row lacks or holds None in (no validation split, a row of an older run
    resumed from its checkpoint) stays empty. EMA_COLUMNS, then TTA_COLUMNS, follow when a row has them."""
    columns = (METRIC_COLUMNS + (EMA_COLUMNS if any("selected_weights" in row for row in history) else ())
               + (TTA_COLUMNS if any("tta_test_accuracy" in row for row in history) else ()))
    lines = [",".join(columns)]
    for row in history:
        values = ("" if row.get(column) is None else row[column] for column in columns)
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values))
    return "\n".join(lines) + "\n"


def step_row(epoch: int, step: dict) -> tuple:
    """The steps.csv row (STEP_COLUMNS) of a step read back by StepMetrics during 0-based `epoch`."""
    return step["step"], epoch + 1, step["lr"], step["loss"]


def steps_csv(rows: list) -> str:
    """steps.csv text: header and one line per step_row, floats to 6 significant digits."""
    lines = [",".join(STEP_COLUMNS)] + [f"{step},{epoch},{lr:.6g},{loss:.6g}" for step, epoch, lr, loss in rows]
    return "\n".join(lines) + "\n"


def run_summary(cfg, history: list, final: dict, best_epoch, trainable_parameters: int, device) -> dict:
    """summary.json of a run: `history` rows as epoch_row makes them, the `final` evaluations
    (as Trainer.evaluate_epoch), the best epoch (1-based) chosen on validation accuracy when
    there is a validation split ("selected_on": "val"), else on test accuracy; best_*_accuracy
    are that epoch's, of the weights best.pt holds: with an EMA, "best_weights" says which
    ("raw" or "ema") and "final_ema_test_accuracy" is the EMA's; with test-time augmentation
    "final_tta_test_accuracy" is its accuracy of the final weights."""
    speeds = [row["train_images_per_second"] for row in history]
    best = next((row for row in history if row["epoch"] == best_epoch), {})
    test, val, prefix = final["test"], final["val"], "ema_" if best.get("selected_weights") == "ema" else ""
    summary = {
        "exp_name": cfg.exp_name, "model_name": cfg.model_name, "dataset": cfg.data.name,
        "epochs_completed": len(history), "best_epoch": best_epoch,
        "best_test_accuracy": best.get(f"{prefix}test_accuracy"), "final_test_accuracy": test["accuracy"],
        "final_test_balanced_accuracy": test["balanced_accuracy"], "final_test_loss": test["loss"],
        "trainable_parameters": trainable_parameters,
        "train_images_per_second": sum(speeds) / len(speeds) if speeds else None,
        "wall_time_seconds": sum(row["epoch_seconds"] for row in history), "device": str(device),
        "selected_on": "val" if val is not None else "test", "best_val_accuracy": best.get(f"{prefix}val_accuracy"),
        "final_val_accuracy": val["accuracy"] if val else None,
        "final_val_balanced_accuracy": val["balanced_accuracy"] if val else None,
        "final_val_loss": val["loss"] if val else None,
    }
    if final["ema_test"] is not None:
        summary.update(best_weights=best.get("selected_weights"), final_ema_test_accuracy=final["ema_test"]["accuracy"])
    if "tta_accuracy" in test:
        summary["final_tta_test_accuracy"] = test["tta_accuracy"]
    return summary


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
