"""What the Kaggle notebook relies on, as library functions: an earlier session's runs found in
its attached read-only output and copied back; the kinds of runs (real, quick, smoke) kept
apart; the projected time of a sweep, also under torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets.synthetic import write_pets
from executors.benchmark.projection import Projection, report, timed_steps
from executors.run_folders.earlier_runs import newest_earlier_run, restore_earlier_run, runs_folders
from executors.run_folders.run_dir import runs_of
from executors.run_folders.run_kinds import kind_config, kind_of
from executors.run_folders.sweep import epochs_left, seeded_config
from utils.config import load_config

REPO = Path(__file__).resolve().parents[1]


def make_run(folder: Path, epochs: int, mtime: float = None) -> Path:
    """A run folder whose last.pt records `epochs` completed epochs."""
    folder.mkdir(parents=True)
    torch.save({"epochs_completed": epochs}, folder / "last.pt")
    (folder / "metrics.csv").write_text("epoch\n" + "".join(f"{e}\n" for e in range(1, epochs + 1)))
    (folder / ".lock").write_text("123\n")
    if mtime is not None:
        os.utime(folder / "last.pt", (mtime, mtime))
    return folder


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


@pytest.fixture
def attached(tmp_path):
    """An input folder holding two saved versions' outputs and a smoke run, read-only."""
    inputs = tmp_path / "input"
    make_run(inputs / "my-notebook" / "runs" / "vgg16_seed0", 30, mtime=1000)
    make_run(inputs / "my-notebook-v2" / "runs" / "vgg16_seed0_1", 45, mtime=900)  # more epochs wins over newer
    make_run(inputs / "my-notebook-v2" / "runs_smoke" / "vgg16_seed0", 99)  # never a real run
    (inputs / "my-notebook-v2" / "runs" / "mlflow.db").write_text("store")
    read_only(inputs)
    yield inputs
    for path in [inputs, *inputs.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_the_newest_earlier_run_is_the_one_with_most_epochs_in_a_runs_folder(attached):
    assert runs_folders(attached) == [attached / "my-notebook" / "runs", attached / "my-notebook-v2" / "runs"]
    assert newest_earlier_run(attached, "vgg16_seed0") == attached / "my-notebook-v2" / "runs" / "vgg16_seed0_1"
    assert newest_earlier_run(attached, "resnet50_seed0") is None
    assert newest_earlier_run(attached / "missing", "vgg16_seed0") is None


def test_an_earlier_run_is_copied_writable_and_becomes_the_newest_here(attached, tmp_path):
    exp_dir = tmp_path / "working" / "runs"
    make_run(exp_dir / "vgg16_seed0", 10)  # this session's own, shorter run keeps its folder
    note = restore_earlier_run(attached, exp_dir, "vgg16_seed0")
    assert "copied the earlier run" in note and "45 epochs" in note
    copied = exp_dir / "vgg16_seed0_1"
    assert runs_of(exp_dir, "vgg16_seed0")[-1] == copied
    assert sorted(p.name for p in copied.iterdir()) == ["last.pt", "metrics.csv"]  # no lock
    assert os.access(copied, os.W_OK) and os.access(copied / "last.pt", os.W_OK)
    assert (exp_dir / "mlflow.db").read_text() == "store"
    # A second call finds the copy here as long as the earlier run: nothing is copied again.
    assert "continuing the one here" in restore_earlier_run(attached, exp_dir, "vgg16_seed0")
    assert sorted(p.name for p in exp_dir.iterdir()) == ["mlflow.db", "vgg16_seed0", "vgg16_seed0_1"]
    assert "no earlier run" in restore_earlier_run(attached, exp_dir, "resnet50_seed0")


def test_smoke_quick_and_real_runs_have_their_own_folders_and_names(tmp_path):
    assert [kind_of(True, True), kind_of(False, True), kind_of(False, False)] == ["smoke", "quick", "real"]
    exp_dir = [f"exp_dir={str(tmp_path / 'runs')!r}"]
    for kind, folder, name in (("real", "runs", "resnet50_tricks"), ("quick", "runs_quick", "resnet50_tricks_quick"),
                               ("smoke", "runs_smoke", "resnet50_tricks_smoke")):
        cfg = kind_config("resnet50_tricks", kind, exp_dir)
        assert cfg.exp_name == name and Path(cfg.exp_dir) == tmp_path / folder
    real = load_config("resnet50_tricks")
    quick = kind_config("resnet50_tricks", "quick")
    assert quick.train.epochs == 2 and quick.data.transforms.train[0][1]["size"] == 64
    assert quick.data.transforms.test[0][1]["size"] == 73 and quick.data.transforms.test[1][1]["size"] == 64
    assert quick.data.transforms.train[2] == real.data.transforms.train[2]  # the jitter kept
    assert quick.model == real.model
    assert kind_config("resnet50_tricks", "quick", ["train.epochs=3"]).train.epochs == 3  # the user's overrides win
    smoke = seeded_config("vgg16", 1, exp_dir, "smoke")
    assert smoke.device == "cpu" and smoke.model.classifier_width == 64 and smoke.exp_name == "vgg16_smoke_seed1"
    assert Path(smoke.exp_dir) == tmp_path / "runs_smoke"


def test_epochs_left_of_a_sweep_plan(tmp_path):
    cfg = load_config("vgg16", [f"exp_dir={str(tmp_path)!r}", "train.epochs=5"])
    cfg.exp_name = "vgg16_seed0"
    assert epochs_left(cfg) == 5
    run = make_run(tmp_path / "vgg16_seed0", 3)
    assert epochs_left(cfg) == 2
    (run / "summary.json").write_text(json.dumps({"epochs_completed": 5}))
    assert epochs_left(cfg) == 0


class FakeTrainer:
    """A trainer whose loader yields `batches` items and whose steps are counted."""

    def __init__(self, batches):
        self.train_loader, self.steps = range(batches), 0
        self.model = torch.nn.Linear(1, 1)

    def make_step(self, batch):
        self.steps += 1


@pytest.mark.parametrize("batches, steps", [(20, 7), (2, 2)])
def test_timed_steps_times_a_few_steps_after_a_warm_up(batches, steps):
    trainer = FakeTrainer(batches)
    assert timed_steps(trainer, steps=5, warm_up=2) >= 0
    assert trainer.steps == steps


def test_the_projection_counts_every_epoch_left_and_compares_with_the_session_limit():
    runs = [Projection("vgg16_seed0", 100, 0.5, 29, 10.0), Projection("resnet50_seed0", 40, 0.25, 29, 5.0)]
    assert runs[0].epoch_seconds == pytest.approx(24.5) and runs[0].seconds == pytest.approx(2450)
    text = report(runs, processes=2)
    assert "vgg16_seed0" in text and "40m50s" in text
    assert "Projected total: 49m00s on 2 processes" in text and "1 Kaggle session of at most 12 h" in text


def test_sweep_project_under_torchrun_measures_on_every_process_and_trains_nothing(tmp_path):
    root = write_pets(tmp_path / "pets", train_per_class=8, test_per_class=4)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "scripts/sweep.py", "--cfg", "resnet50_tricks", "--seeds", "0", "--kind", "smoke", "--project", "--set",
               f"data.root={str(root)!r}", "data.download=False", f"exp_dir={str(tmp_path / 'runs')!r}",
               f"data.cache_dir={str(tmp_path / 'cache')!r}", "logger.backend='none'"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Projected total:") == 1 and "on 2 processes" in result.stdout  # rank 0 reports
    assert "resnet50_tricks_smoke_seed0" in result.stdout
    assert not (tmp_path / "runs_smoke").exists()  # nothing trained
