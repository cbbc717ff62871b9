"""The Kaggle notebook runs top to bottom on a CPU (synthetic data) and resumes on re-run."""
import csv
import json
import os
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "kaggle_notebook.ipynb"

pytestmark = pytest.mark.skipif(os.path.isdir("/kaggle/input"), reason="would train on the real dataset")


def execute(work_dir, overrides="[]"):
    """Run every cell of the notebook in a fresh kernel with WORK_DIR = `work_dir`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    settings = next(cell for cell in notebook.cells if "OVERRIDES = [" in cell.source)
    settings.source = settings.source.replace("OVERRIDES = []", f"OVERRIDES = {overrides}")
    os.environ["KAGGLE_NOTEBOOK_WORK_DIR"] = str(work_dir)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        del os.environ["KAGGLE_NOTEBOOK_WORK_DIR"]


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_notebook_trains_evaluates_and_resumes(tmp_path):
    execute(tmp_path)
    run_dir = tmp_path / "runs" / "resnet50_tricks"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_completed"] == 2
    assert summary["trainable_parameters"] < 1_000_000  # the tiny synthetic-data model, not ResNet-50
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["model_name"] == "ResNet50" and best["epochs_completed"] == best["best_epoch"]
    assert (tmp_path / "batch_augmentation.png").stat().st_size > 0
    assert (run_dir / "confusion_matrix_best_eval.png").stat().st_size > 0
    first_two = read_metrics(run_dir)

    # Running again with more epochs continues the same run instead of starting a new one.
    execute(tmp_path, overrides='["train.epochs=3"]')
    assert [p.name for p in (tmp_path / "runs").glob("resnet50_tricks*")] == ["resnet50_tricks"]
    rows = read_metrics(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert rows[:2] == first_two
    assert float(rows[2]["lr"]) > 0  # the 3-epoch schedule, not the finished 2-epoch one (which ends at 0)
    assert json.loads((run_dir / "summary.json").read_text())["epochs_completed"] == 3
