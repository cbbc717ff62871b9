"""The text files of a run directory: metrics.csv rows and summary.json.

metrics.csv has one row per epoch with METRIC_COLUMNS (a contract: new columns are added at
the end only); summary.json holds the keys listed in DESIGN.md section 5.
"""
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                  "test_balanced_accuracy", "epoch_seconds", "train_images_per_second", "skipped_steps")


def epoch_row(epoch: int, lr: float, train: dict, test: dict, wall_seconds: float) -> dict:
    """The history row (METRIC_COLUMNS) of 0-based `epoch`: `lr` at its start, `train` as
    Trainer.train_epoch returns it, `test` as evaluate_model, `wall_seconds` in all."""
    return {"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "test_balanced_accuracy": test["balanced_accuracy"], "epoch_seconds": wall_seconds,
            "train_images_per_second": train["images"] / train["seconds"],
            "skipped_steps": train["skipped_steps"]}


def metrics_csv(history: list) -> str:
    """metrics.csv text: header and one line per history row, floats to 6 significant digits;
    a column that an older run's rows lack (resumed from an older checkpoint) stays empty."""
    lines = [",".join(METRIC_COLUMNS)]
    for row in history:
        values = (row.get(column, "") for column in METRIC_COLUMNS)
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values))
    return "\n".join(lines) + "\n"


def run_summary(cfg, history: list, final: dict, best_epoch, best_accuracy, trainable_parameters: int,
                device) -> dict:
    """summary.json of a run: `history` rows as epoch_row makes them, `final` test metrics
    (evaluate_model), the best epoch (1-based) and its test accuracy."""
    speeds = [row["train_images_per_second"] for row in history]
    return {
        "exp_name": cfg.exp_name, "model_name": cfg.model_name, "dataset": cfg.data.name,
        "epochs_completed": len(history), "best_epoch": best_epoch,
        "best_test_accuracy": best_accuracy, "final_test_accuracy": final["accuracy"],
        "final_test_balanced_accuracy": final["balanced_accuracy"], "final_test_loss": final["loss"],
        "trainable_parameters": trainable_parameters,
        "train_images_per_second": sum(speeds) / len(speeds) if speeds else None,
        "wall_time_seconds": sum(row["epoch_seconds"] for row in history), "device": str(device),
    }
