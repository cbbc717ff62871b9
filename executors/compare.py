"""Compare finished runs: one row per run directory holding a summary.json."""
import json
from pathlib import Path

COLUMNS = [("run", "run"), ("model_name", "model"), ("trainable_parameters", "parameters"),
           ("epochs_completed", "epochs"), ("best_test_accuracy", "best acc"), ("best_epoch", "best epoch"),
           ("final_test_accuracy", "final acc"), ("final_test_balanced_accuracy", "final bal. acc"),
           ("final_test_loss", "final loss"), ("train_images_per_second", "train img/s"),
           ("wall_time_seconds", "wall s")]


def collect_summaries(exp_dir) -> list:
    """summary.json of every run under `exp_dir`, with the run directory's name as "run"."""
    rows = []
    for path in sorted(Path(exp_dir).glob("*/summary.json")):
        rows.append({"run": path.parent.name, **json.loads(path.read_text())})
    return rows


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1.0 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def markdown_table(rows) -> str:
    """A Markdown table of the runs, best final accuracy first."""
    rows = sorted(rows, key=lambda r: -(r.get("final_test_accuracy") or 0))
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)
