"""Processes that share an experiment directory: the MLflow store is created by one process
at a time, and a run directory is trained into by one process at a time. Real processes."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from datasets.synthetic import write_kmnist_idx
from executors.run_folders.run_dir import run_dir_lock
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]

OPEN_STORE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from easydict import EasyDict
    from logs.mlflow_backend import MlflowBackend
    run_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
    run_dir.mkdir()
    while not go.exists():
        time.sleep(0.001)
    backend = MlflowBackend(EasyDict(experiment="KMNIST-MLP", tracking_uri=None), run_dir, run_dir.name)
    backend.log_params({"train.lr": 0.1})
    backend.close("FINISHED")
""")


def test_processes_opening_a_new_mlflow_store_at_once_all_succeed(tmp_path):
    """Without the lock, 3 processes racing to create mlflow.db failed (alembic migration errors)."""
    from mlflow import MlflowClient
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(tmp_path / f"run{i}"), str(go), str(REPO)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    time.sleep(6)  # all three have imported mlflow and wait for the same moment
    go.touch()
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e for e in client.search_experiments() if e.name == "KMNIST-MLP"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["run0", "run1", "run2"]
    assert all(run.info.status == "FINISHED" for run in runs)


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from executors.run_folders.run_dir import run_dir_lock
    with run_dir_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


def test_a_run_directory_is_held_by_one_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path), str(REPO)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError, match=rf"run {tmp_path} is in use by process {holder.pid}: wait"):
            with run_dir_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_dir_lock(tmp_path):  # a killed holder leaves nothing held
        pass


def test_resume_auto_while_the_run_trains_exits_2_and_writes_nothing(tmp_path):
    root = tmp_path / "kmnist"
    write_kmnist_idx(root, train_per_class=20, test_per_class=5)
    args = [sys.executable, str(REPO / "scripts" / "train.py"), "--cfg", "mlp", "--set", f"data.root='{root}'",
            "data.md5=None", "data.download=False", "device='cpu'", f"exp_dir='{tmp_path}'", "threads=1",
            "logger.backend='none'", "train.epochs=100000"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in first.stdout:
            if line.startswith("epoch 2/"):  # last.pt exists: --resume auto finds this run
                break
        second = subprocess.run(args + ["--resume", "auto"], capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.strip() == (f"error: run {tmp_path / 'mlp_base'} is in use by process {first.pid}: "
                                         f"wait until it ends (or stop it) and resume then, or start a new run "
                                         f"without --resume.")
        assert "Resumed from" not in second.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143
