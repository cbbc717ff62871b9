"""Writing run files: atomic writes, the user's umask, a full disk, unwritable folders, and
leftovers of killed writers. /dev/full gives a real ENOSPC without filling a disk."""
import errno
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import utils.atomic_files
from executors.checkpoints.checkpoint import save_checkpoint
from executors.run_folders.run_dir import new_run_dir
from utils import interrupts
from utils.atomic_files import write_atomic, write_text_atomic
from utils.errors import Interrupted, StorageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def full_disk(monkeypatch):
    """Temporary files of atomic writes are opened on /dev/full: every write fails with ENOSPC."""
    made = []

    def open_temporary(folder, name):
        temporary = f".{name}.full.tmp"
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT, dir_fd=folder))
        made.append(temporary)
        return temporary, os.open("/dev/full", os.O_WRONLY)
    monkeypatch.setattr(utils.atomic_files, "open_temporary", open_temporary)
    return made


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def test_a_checkpoint_on_a_full_disk_is_one_storage_error_and_leaves_the_old_file(tmp_path, full_disk):
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")
    with pytest.raises(StorageError) as error:
        save_checkpoint({"weights": torch.zeros(100_000)}, target)
    assert str(error.value).startswith(f"cannot write {target}: no space left on device (ENOSPC). Free some space")
    assert "unexpected pos" not in str(error.value)
    assert target.read_bytes() == b"previous" and leftovers(tmp_path) == []


def test_a_text_file_on_a_full_disk_leaves_no_empty_temporary(tmp_path, full_disk):
    with pytest.raises(StorageError, match="no space left on device"):
        write_text_atomic(tmp_path / "metrics.csv", "epoch\n" * 100_000)
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    for name in (".last.pt.abc123.tmp", ".last.pt.zz9.tmp", ".metrics.csv.q1.tmp"):
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".keep").write_text("not ours")
    save_checkpoint({"step": 1}, tmp_path / "last.pt")
    assert leftovers(tmp_path) == [".keep", ".metrics.csv.q1.tmp"]
    write_text_atomic(tmp_path / "metrics.csv", "epoch\n")
    assert leftovers(tmp_path) == [".keep"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "summary.json", "{}")
        save_checkpoint({"step": 1}, tmp_path / "best.pt")
        (tmp_path / "plain.png").write_bytes(b"png")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"summary.json": 0o666 & ~umask, "best.pt": 0o666 & ~umask, "plain.png": 0o666 & ~umask}


def test_an_exp_dir_that_is_a_file_or_unwritable_is_a_storage_error(tmp_path, monkeypatch):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(StorageError, match=f"exp_dir {tmp_path / 'runs'} is a file, not a directory"):
        new_run_dir(tmp_path / "runs", "mlp")
    with pytest.raises(StorageError, match=f"in exp_dir {tmp_path / 'runs' / 'deeper'}: not a directory"):
        new_run_dir(tmp_path / "runs" / "deeper", "mlp")

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))
    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(StorageError, match=r"read-only file system \(EROFS\)\. Set exp_dir to a writable folder"):
        new_run_dir(tmp_path / "elsewhere", "mlp")


def test_a_full_disk_during_training_fails_the_tracker_run_with_one_message(tmp_path, monkeypatch):
    from tests.test_trainer import make_trainer, mlp_cfg
    statuses = []
    monkeypatch.setattr("logs.Logger.NullBackend.close", lambda self, status: statuses.append(status))
    trainer = make_trainer(mlp_cfg(tmp_path))
    (tmp_path / "run").mkdir()
    original = utils.atomic_files.open_temporary

    def open_temporary(folder, name):  # the disk fills up when the first checkpoint is written
        if name in ("best.pt", "last.pt"):
            return f".{name}.full.tmp", os.open("/dev/full", os.O_WRONLY)
        return original(folder, name)
    monkeypatch.setattr(utils.atomic_files, "open_temporary", open_temporary)
    with pytest.raises(StorageError, match=f"cannot write {tmp_path / 'run'}/(best|last).pt: no space left"):
        trainer.fit(tmp_path / "run")
    assert statuses == ["FAILED"]


def test_a_tracker_store_that_cannot_be_written_is_a_storage_error(tmp_path, monkeypatch):
    from easydict import EasyDict

    from logs.mlflow_backend import MlflowBackend
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    backend = MlflowBackend(EasyDict(experiment="x", tracking_uri=None), run_dir, "run")

    def full(*args, **kwargs):
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as error:
            raise RuntimeError("(raised as a result of Query-invoked autoflush)") from error
    monkeypatch.setattr(backend.client._client, "log_batch", full)
    with pytest.raises(StorageError, match=r"cannot write the MLflow store sqlite:///.*mlflow.db: "
                                           r"database or disk is full\. Free some space"):
        backend.log_metrics([("train/loss", 0.5, 1, 0.0)])
    monkeypatch.setattr(backend.client._client, "log_batch", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # other failures keep their type
        backend.log_metrics([("train/loss", 0.5, 1, 0.0)])


def run_train(*overrides, cwd=None):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--cfg", "mlp", "--set",
                           "device='cpu'", "logger.backend='none'", *overrides],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_unusable_paths_exit_2_with_one_message(tmp_path):
    from datasets.synthetic import write_kmnist_idx
    root = tmp_path / "kmnist"
    write_kmnist_idx(root, train_per_class=5, test_per_class=2)
    data = [f"data.root='{root}'", "data.md5=None", "data.download=False"]
    (tmp_path / "a_file").write_text("x")
    results = {
        "exp_dir is a file": run_train(*data, f"exp_dir='{tmp_path / 'a_file'}'"),
        "exp_dir under a file": run_train(*data, f"exp_dir='{tmp_path / 'a_file' / 'runs'}'"),
        "data root is a file": run_train(f"data.root='{tmp_path / 'a_file'}'", "data.download=False",
                                         f"exp_dir='{tmp_path / 'runs'}'"),
    }
    for case, result in results.items():
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Traceback" not in result.stderr, (case, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "a_file" in lines[0], (case, lines)


def test_a_signal_during_a_write_is_raised_once_the_file_is_complete(tmp_path):
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    try:
        def write(file):
            file.write(b"first half, ")
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside the write ...
            file.write(b"second half")

        with pytest.raises(Interrupted) as caught:
            write_atomic(tmp_path / "last.pt", write)
        assert caught.value.signal_number == signal.SIGTERM  # ... and raises after the rename
        assert (tmp_path / "last.pt").read_bytes() == b"first half, second half"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
        with pytest.raises(Interrupted) as caught:  # outside a write: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert caught.value.signal_number == signal.SIGINT
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
