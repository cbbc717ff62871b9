"""The Kaggle notebook on a CPU: code found as a checkout uploaded under a read-only input
folder (as Kaggle mounts datasets), the smoke test trained, evaluated and resumed on re-run; and
its stops with instructions when the dataset or the code is missing."""
import csv
import json
import os
import shutil
import stat
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "kaggle_notebook.ipynb"
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "runs", "kaggle_working", ".pytest_cache")

pytestmark = pytest.mark.skipif(os.path.isdir("/kaggle/input"), reason="would train on the real dataset")


def execute(work_dir, input_dir, run_from, overrides="[]", smoke_test=True, on_kaggle=True):
    """Run every cell of the notebook in a fresh kernel started in `run_from`, with WORK_DIR and
    INPUT_DIR set through the notebook's environment variables; KAGGLE_KERNEL_RUN_TYPE as
    Kaggle sets it when `on_kaggle`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    settings = next(cell for cell in notebook.cells if "OVERRIDES = [" in cell.source)
    settings.source = settings.source.replace("OVERRIDES = []", f"OVERRIDES = {overrides}")
    settings.source = settings.source.replace("SMOKE_TEST = False", f"SMOKE_TEST = {smoke_test}")
    environment = {"KAGGLE_NOTEBOOK_WORK_DIR": str(work_dir), "KAGGLE_NOTEBOOK_INPUT_DIR": str(input_dir)}
    if on_kaggle:
        environment["KAGGLE_KERNEL_RUN_TYPE"] = "Interactive"
    os.environ.update(environment)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(run_from)}}).execute()
    finally:
        for name in environment:
            del os.environ[name]


def set_read_only(folder, read_only=True):
    """chmod a tree read-only (as Kaggle mounts /kaggle/input), or writable again."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555 if read_only else 0o755)
        else:
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (0 if read_only else stat.S_IWUSR))


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def uploaded(tmp_path):
    """(input folder holding a read-only copy of this checkout two levels down, as Kaggle mounts an
    uploaded dataset, a folder outside any checkout to start the kernel in)."""
    upload = tmp_path / "input" / "my-project-code" / "repo-main"
    shutil.copytree(REPO, upload, ignore=NOT_COPIED)
    (tmp_path / "elsewhere").mkdir()
    set_read_only(tmp_path / "input")
    yield tmp_path / "input", tmp_path / "elsewhere"
    set_read_only(tmp_path / "input", read_only=False)


def test_uploaded_checkout_trains_the_smoke_test_evaluates_and_resumes(tmp_path, uploaded):
    input_dir, elsewhere = uploaded
    before = snapshot(input_dir)
    work = tmp_path / "work"
    execute(work, input_dir, elsewhere)
    assert (work / "code" / "executors" / "trainer.py").is_file()  # the copy the scripts ran from
    run_dir = work / "runs" / "resnet50_tricks"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_completed"] == 2
    assert summary["trainable_parameters"] < 1_000_000  # the tiny smoke-test model, not ResNet-50
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["model_name"] == "ResNet50" and best["epochs_completed"] == best["best_epoch"]
    assert best["config"]["logger"]["backend"] == "mlflow" and (work / "runs" / "mlflow.db").is_file()
    assert (work / "batch_augmentation.png").stat().st_size > 0
    assert (run_dir / "confusion_matrix_best_eval.png").stat().st_size > 0
    first_two = read_metrics(run_dir)

    # Running again (a new session: the code is copied afresh) with more epochs continues the same run.
    execute(work, input_dir, elsewhere, overrides='["train.epochs=3"]')
    assert [p.name for p in (work / "runs").glob("resnet50_tricks*")] == ["resnet50_tricks"]
    rows = read_metrics(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert rows[:2] == first_two
    assert float(rows[2]["lr"]) > 0  # the 3-epoch schedule, not the finished 2-epoch one (which ends at 0)
    assert json.loads((run_dir / "summary.json").read_text())["epochs_completed"] == 3
    assert snapshot(input_dir) == before  # nothing written into the read-only input


def test_on_kaggle_without_the_dataset_it_stops_with_instructions(tmp_path):
    (tmp_path / "input").mkdir()
    with pytest.raises(CellExecutionError) as error:
        execute(tmp_path / "work", tmp_path / "input", REPO / "notebooks", smoke_test=False)
    message = str(error.value)
    assert "Oxford-IIIT Pet is not attached" in message and "Add Input" in message and "SMOKE_TEST = True" in message
    assert not (tmp_path / "work" / "runs").exists() and not (tmp_path / "work" / "synthetic-pets").exists()


def test_without_any_code_it_stops_with_both_ways_to_get_it(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(CellExecutionError) as error:
        execute(tmp_path / "work", tmp_path / "input", tmp_path / "elsewhere")
    message = str(error.value)
    assert "The project's code is not here" in message
    assert "Upload a checkout of this project as a Kaggle dataset" in message and "REPO_URL" in message
