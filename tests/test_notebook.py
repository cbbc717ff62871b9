"""The Kaggle notebook run as Kaggle would run it, on the CPU, in a simulated /kaggle tree:
the code uploaded as a read-only dataset, the pets attached read-only in a nested layout,
Kaggle's packages without MLflow (blocked through sitecustomize) and pip without an index.

One user's journey, session by session: a smoke test of the three configs (sweep, projected
time, report, evaluation), then a real run in the same folder, then a new session with the
first one's output attached read-only that resumes it, then the quick switch; and the stops
with instructions when the dataset or the code is missing."""
import csv
import json
import os
import re
import shutil
import stat
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from datasets.synthetic import write_pets

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "kaggle_notebook.ipynb"
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "runs", "runs_*", "kaggle_working",
                                    ".pytest_cache")
PROBE = ('import json\nprint("PROBE" + json.dumps({"preview": PREVIEW, "loader_alive": "train_loader" in globals(), '
         '"cuda_initialized": torch.cuda.is_initialized(), "repo": str(REPO_DIR)}))')
# A real run in these tests: a small ResNet-50 (not the smoke test's) at 32 px on the CPU.
TINY_REAL = ["device='cpu'", "data.num_workers=0", "train.batch_size=8",
             "model={'variant': 'D', 'zero_gamma': True, 'layers': [1, 1, 1, 1], 'width': 4}",
             'data.transforms.train=[("RandomResizedCrop", {"size": 32}), ("ToTensor", {}), ("Normalize", {})]',
             'data.transforms.test=[("Resize", {"size": 36}), ("CenterCrop", {"size": 32}), ("ToTensor", {}), '
             '("Normalize", {})]']

pytestmark = pytest.mark.skipif(os.path.isdir("/kaggle/input"), reason="would train on the real dataset")


def execute(kaggle, run_from, settings=None, on_kaggle=True):
    """Run every cell of the notebook, and a probe of the kernel's state, in a fresh kernel
    started in `run_from`, with `settings` (name -> Python source) replacing the settings
    cell's values and the folders of `kaggle` (a dict: work, input, temp) passed through the
    notebook's environment variables; returns everything the cells printed."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code" and "OVERRIDES = [" in cell.source)
    for name, value in (settings or {}).items():
        cell.source, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", cell.source, flags=re.M)
        assert count == 1, name
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    environment = {"KAGGLE_NOTEBOOK_WORK_DIR": str(kaggle["work"]), "KAGGLE_NOTEBOOK_INPUT_DIR": str(kaggle["input"]),
                   "KAGGLE_NOTEBOOK_TEMP_DIR": str(kaggle["temp"]), "PIP_NO_INDEX": "1",
                   "PYTHONPATH": str(kaggle["site"])}
    if on_kaggle:
        environment["KAGGLE_KERNEL_RUN_TYPE"] = "Interactive"
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(run_from)}}).execute()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    return "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))


def probe(printed):
    return json.loads(printed.split("PROBE", 1)[1].splitlines()[0])


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


def nested_pets(root):
    """The synthetic pets as a Kaggle copy nests them: <root>/pets-copy/images/images/*.jpg and
    <root>/pets-copy/annotations/annotations/{trainval,test}.txt."""
    flat = write_pets(root / "flat", train_per_class=8, test_per_class=4)
    for name in ("images", "annotations"):
        (root / "pets-copy" / name).mkdir(parents=True)
        (flat / name).rename(root / "pets-copy" / name / name)
    shutil.rmtree(flat)


def kaggle_tree(tmp_path, name, attached=()):
    """A session's folders: work, temp, a site folder whose sitecustomize hides MLflow (Kaggle
    has none), and a read-only input holding the uploaded code (two levels down), the nested
    pets and the `attached` earlier outputs ({name: folder})."""
    session = {key: tmp_path / name / key for key in ("work", "temp", "input", "site")}
    session["site"].mkdir(parents=True)
    (session["site"] / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None  # not installed\n")
    shutil.copytree(REPO, session["input"] / "my-project-code" / "repo-main", ignore=NOT_COPIED)
    nested_pets(session["input"])
    for output_name, folder in dict(attached).items():
        shutil.copytree(folder, session["input"] / output_name, symlinks=True)
    set_read_only(session["input"])
    return session


@pytest.fixture
def elsewhere(tmp_path):
    """A folder outside any checkout to start the kernel in; inputs made writable again at the end."""
    (tmp_path / "elsewhere").mkdir()
    yield tmp_path / "elsewhere"
    for session in tmp_path.iterdir():
        if (session / "input").is_dir():
            set_read_only(session / "input", read_only=False)


def test_smoke_then_real_then_a_new_session_resumes_then_quick(tmp_path, elsewhere):
    # Session 1, first the smoke test of the three configs: the sweep, the projection, the report.
    first = kaggle_tree(tmp_path, "session1")
    printed = execute(first, elsewhere, {"SMOKE_TEST": "True"})
    work = first["work"]
    names = ["vgg16_smoke_seed0", "resnet50_smoke_seed0", "resnet50_tricks_smoke_seed0"]
    assert sorted(p.name for p in (work / "runs_smoke").glob("*_seed0")) == sorted(names)
    assert not (work / "runs").exists()  # a smoke run is never where real runs go
    for name in names:
        summary = json.loads((work / "runs_smoke" / name / "summary.json").read_text())
        assert summary["epochs_completed"] == 2 and summary["trainable_parameters"] < 1_000_000
        assert (work / "runs_smoke" / name / "confusion_matrix_best_eval.png").stat().st_size > 0
    assert "Projected total:" in printed and "GPU memory for training: no GPU" in printed
    report = work / "runs_smoke" / "report"
    assert (report / "report.md").is_file() and list(report.glob("*.png"))
    state = probe(printed)
    assert state == {"preview": {"device": "cpu", "loader": "EpochDataLoader"}, "loader_alive": False,
                     "cuda_initialized": False, "repo": str(work / "code")}
    assert "The kernel holds no GPU memory" in printed
    assert list((first["temp"] / "cache").iterdir()) and not (work / "cache").exists()  # cache not in the output
    assert "note: the optional mlflow is not installed" in printed and "Logger backend: tensorboard" in printed
    assert "ERROR" not in printed and "Installing" not in printed  # no pip attempt for what is optional
    assert f"\"exp_dir='{work / 'runs'}'\"" in printed and "'\"'\"'" not in printed  # a command to copy

    # Session 1 goes on with the real run (a small model of its own) in the same folder.
    real = {"CONFIGS": '["resnet50_tricks"]', "PROJECT_TIME": "False",
            "OVERRIDES": repr([*TINY_REAL, "train.epochs=2"])}
    printed = execute(first, elsewhere, real)
    run_dir = work / "runs" / "resnet50_tricks_seed0"
    assert json.loads((run_dir / "summary.json").read_text())["epochs_completed"] == 2
    assert "images in" in printed and str(first["input"] / "pets-copy" / "images" / "images") in printed
    first_two = read_metrics(run_dir)

    # Session 2: a fresh working folder, the first session's output attached read-only; 3 epochs asked.
    second = kaggle_tree(tmp_path, "session2", {"my-notebook": work})
    before = snapshot(second["input"])
    printed = execute(second, elsewhere, {**real, "OVERRIDES": repr([*TINY_REAL, "train.epochs=3"])})
    assert "the code dataset you attached, ahead of the code copy in an earlier session's output" in printed
    assert "copied the earlier run" in printed
    resumed = second["work"] / "runs" / "resnet50_tricks_seed0"
    rows = read_metrics(resumed)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"] and rows[:2] == first_two
    assert json.loads((resumed / "summary.json").read_text())["epochs_completed"] == 3
    assert not (second["work"] / "runs_smoke").exists()  # smoke runs are never brought back
    assert snapshot(second["input"]) == before  # nothing written into the read-only input

    # Quick switch: the attached data, small images, 2 epochs, in its own folder.
    printed = execute(second, elsewhere, {**real, "QUICK": "True", "OVERRIDES": repr(TINY_REAL[:4])})
    quick = second["work"] / "runs_quick" / "resnet50_tricks_quick_seed0"
    config = json.loads((quick / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["data"]["transforms"]["train"][0][1]["size"] == 64
    assert json.loads((quick / "summary.json").read_text())["epochs_completed"] == 2
    assert len(read_metrics(resumed)) == 3  # the real run untouched


def test_on_kaggle_without_the_dataset_it_stops_saying_what_it_saw(tmp_path, elsewhere):
    session = {key: tmp_path / "session" / key for key in ("work", "temp", "input", "site")}
    for folder in session.values():
        folder.mkdir(parents=True)
    (session["input"] / "some-other-dataset").mkdir()
    with pytest.raises(CellExecutionError) as error:
        execute(session, REPO / "notebooks", {"CONFIGS": '["resnet50_tricks"]'})
    message = str(error.value)
    assert "Oxford-IIIT Pet is not attached" in message and "Add Input" in message and "SMOKE_TEST = True" in message
    assert "looked up to 6 levels down" in message and "some-other-dataset/" in message
    assert not (session["work"] / "runs").exists() and not (session["temp"] / "synthetic-pets").exists()


def test_without_any_code_it_stops_with_both_ways_to_get_it(tmp_path, elsewhere):
    session = {key: tmp_path / "session" / key for key in ("work", "temp", "input", "site")}
    for folder in session.values():
        folder.mkdir(parents=True)
    with pytest.raises(CellExecutionError) as error:
        execute(session, elsewhere)
    message = str(error.value)
    assert "The project's code is not here" in message
    assert "Upload a checkout of this project as a Kaggle dataset" in message and "REPO_URL" in message
