"""Compare finished runs: one row per run directory holding a summary.json."""
import json
from pathlib import Path

# (summary.json key, column title, format of a number in that column)
COLUMNS = [("run", "run", None), ("model_name", "model", None), ("trainable_parameters", "parameters", ","),
           ("epochs_completed", "epochs", ","), ("best_test_accuracy", "best acc", ".4f"),
           ("best_epoch", "best epoch", ","), ("final_test_accuracy", "final acc", ".4f"),
           ("final_test_balanced_accuracy", "final bal. acc", ".4f"), ("final_test_loss", "final loss", ".4f"),
           ("train_images_per_second", "train img/s", ",.0f"), ("wall_time_seconds", "wall s", ",.0f")]


def collect_summaries(exp_dir) -> list:
    """summary.json of every run under `exp_dir`, with the run directory's name as "run"."""
    rows = []
    for path in sorted(Path(exp_dir).glob("*/summary.json")):
        rows.append({"run": path.parent.name, **json.loads(path.read_text())})
    return rows


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
