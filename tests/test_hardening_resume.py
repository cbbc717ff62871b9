"""Resume stays true (issue 20, items 11 and 12): a resume that would change what the run
trained is refused naming the keys, a finished run says so and is left untouched, and a
resumed run keeps the thread count it started with, so it ends bit-identical."""
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.kmnist import IDX_FILES, idx_bytes
from datasets.synthetic import write_kmnist_idx
from executors.checkpoints.checkpoint import load_checkpoint
from executors.checkpoints.resume import MAY_CHANGE_ON_RESUME
from executors.launch import train_experiment
from utils.config import load_config
from utils.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(folder, train_per_class=12, test_per_class=4)  # 120 images: 4 steps of 32 per epoch
    return folder


def overrides(root, exp_dir, *more):
    return [f"data.root='{root}'", "data.md5=None", "data.download=False", f"exp_dir='{exp_dir}'", "device='cpu'",
            "threads=1", "logger.backend='none'", "train.epochs=2", "train.batch_size=32", *more]


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_dir(root, tmp_path):
    """A finished 2-epoch run of the base MLP (ReLU) in tmp_path, for a test that may change it."""
    train_experiment(load_config("mlp", overrides(root, tmp_path)))
    return tmp_path / "mlp_base"


@pytest.fixture(scope="module")
def kept_run(root, tmp_path_factory):
    """A finished 2-epoch run of the base MLP, shared by the tests that only try to resume it
    (each checks that nothing in it changed)."""
    exp_dir = tmp_path_factory.mktemp("runs")
    train_experiment(load_config("mlp", overrides(root, exp_dir)))
    return exp_dir / "mlp_base"


def snapshot(folder):
    """{file name: (size, mtime in ns)} of everything in `folder` but the lock (rewritten with the
    pid of each process that holds the folder)."""
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.rglob("*"))
            if path.name != ".lock"}


def test_another_activation_is_refused_naming_model_layers(root, kept_run):
    before = snapshot(kept_run)
    gelu = load_config("mlp_gelu", overrides(root, kept_run.parent, "train.epochs=3"))
    with pytest.raises(CheckpointError) as refused:
        train_experiment(gelu, resume=str(kept_run))
    message = str(refused.value)
    assert f"Cannot resume {kept_run / 'last.pt'} with this config" in message
    assert "model.layers[2][0]: 'ReLU' -> 'GELU'" in message and "exp_name: 'mlp_base' -> 'mlp_gelu'" in message
    assert "Start a new run without --resume, or resume with the run's own config" in message
    assert snapshot(kept_run) == before  # nothing written


@pytest.mark.parametrize("changed, listed", [
    ("train.batch_size=16", "train.batch_size: 32 -> 16"),
    ("seed=1", "seed: 0 -> 1"),
    ("train.lr=0.1", "train.lr: 0.05 -> 0.1"),
    ("train.lr_scaling={'base_lr': 0.1, 'base_batch_size': 256}", "train.lr_scaling: None -> {'base_lr': 0.1"),
    ("train.weight_decay=0.01", "train.weight_decay: 0.0001 -> 0.01"),
    ("train.optimizer_args={'momentum': 0.9}", "train.optimizer_args.nesterov: True -> <absent>"),
    ("train.optimizer_args={'momentum': 0.9, 'nesterov': True, 'maximize': True}",
     "train.optimizer_args.maximize: <absent> -> True"),
    ("train.scheduler='constant'", "train.scheduler: 'cosine' -> 'constant'"),
    ("train.warmup_epochs=1.0", "train.warmup_epochs: 0.0 -> 1.0"),
    ("train.label_smoothing=0.1", "train.label_smoothing: 0.0 -> 0.1"),
    ("train.no_bias_decay=True", "train.no_bias_decay: False -> True"),
    ("train.grad_clip_norm=1.0", "train.grad_clip_norm: None -> 1.0"),
    ("train.amp='bf16'", "train.amp: 'auto' -> 'bf16'"),
    ("data.val_fraction=0.2", "data.val_fraction: 0.0 -> 0.2"),
    ("data.transforms.train=[('ToTensor', {})]", "data.transforms.train: [['ToTensor', {}], ['Normalize', {}]] -> "),
    ("data.mean=[0.5]", "data.mean[0]: 0.500084 -> 0.5"),
    ("model.init_type.bias=('ones_', {})", "model.init_type.bias[0]: 'zeros_' -> 'ones_'"),
])
def test_every_setting_of_what_was_trained_is_refused(root, kept_run, changed, listed):
    before = snapshot(kept_run)
    cfg = load_config("mlp", overrides(root, kept_run.parent, "train.epochs=3", changed))
    with pytest.raises(CheckpointError, match="Cannot resume") as refused:
        train_experiment(cfg, resume="auto")
    assert listed in str(refused.value)
    assert snapshot(kept_run) == before


def test_only_the_allowed_keys_may_change_and_the_run_goes_on(root, tmp_path, run_dir):
    assert MAY_CHANGE_ON_RESUME == (
        "exp_dir", "device", "threads", "data.root", "data.download", "data.mirrors", "data.md5", "data.cache_dir",
        "data.num_workers", "data.loader", "train.epochs", "train.compile", "train.cuda_graph",
        "train.max_nonfinite_steps", "train.confusion_matrix_every_epoch", "train.overfit_batch_steps", "logger", "eval")
    copy = tmp_path / "copy_of_the_data"
    shutil.copytree(root, copy)  # the same files elsewhere
    cfg = load_config("mlp", overrides(copy, tmp_path, "train.epochs=3", "threads=2", "data.loader='workers'",
                                       "logger.flush_every=2", "train.max_nonfinite_steps=5", "train.cuda_graph=False",
                                       "train.confusion_matrix_every_epoch=True"))
    assert train_experiment(cfg, resume="auto")["epochs_completed"] == 3


def test_other_images_under_an_allowed_data_root_are_refused(tmp_path, kept_run):
    other = tmp_path / "other_data"
    write_kmnist_idx(other, train_per_class=13, test_per_class=4)
    cfg = load_config("mlp", overrides(other, kept_run.parent, "train.epochs=3"))
    changed = r"\(data\.mean\[0\]: 0\.500084 -> 0\.50\d+; data\.std\[0\]: 0\.306522 -> 0\.3\d+\)"
    with pytest.raises(CheckpointError, match="Cannot resume .*" + changed):
        train_experiment(cfg, resume="auto")


def test_fewer_epochs_than_done_are_refused_naming_the_epochs_done(root, kept_run):
    before = snapshot(kept_run)
    with pytest.raises(CheckpointError) as refused:
        train_experiment(load_config("mlp", overrides(root, kept_run.parent, "train.epochs=1")), resume="auto")
    assert str(refused.value) == (
        f"train.epochs=1 is below the 2 epochs the run of {kept_run / 'last.pt'} has done: resume with "
        f"train.epochs=2 or more (--set train.epochs=M), or start a new run without --resume.")
    assert snapshot(kept_run) == before


def test_a_finished_run_says_so_and_writes_nothing(root, kept_run, capsys, monkeypatch):
    before = snapshot(kept_run)
    monkeypatch.setattr("executors.run_folders.tracking.Logger", lambda *args: pytest.fail("a tracker run was opened"))
    capsys.readouterr()
    summary = train_experiment(load_config("mlp", overrides(root, kept_run.parent)), resume="auto")
    assert summary["epochs_completed"] == 2 and summary["best_test_accuracy"] > 0
    assert capsys.readouterr().out == (
        f"already finished: 2 epochs ({kept_run}); nothing to train. To train longer, resume with "
        f"--set train.epochs=M (M > 2)\n")
    assert snapshot(kept_run) == before  # config.json not rewritten, nothing else either


def test_a_run_stopped_before_its_summary_is_completed(root, tmp_path, run_dir):
    (run_dir / "summary.json").unlink()  # killed between the last checkpoint and the summary
    summary = train_experiment(load_config("mlp", overrides(root, tmp_path)), resume="auto")
    assert summary["epochs_completed"] == 2 and (run_dir / "summary.json").is_file()


def test_the_cli_refuses_with_exit_2_and_resumes_with_the_saved_config(root, tmp_path, run_dir):
    def train(*args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], capture_output=True,
                              text=True, timeout=600)
    refused = train("--cfg", "mlp_gelu", "--resume", str(run_dir), "--set", *overrides(root, tmp_path))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "model.layers[2][0]: 'ReLU' -> 'GELU'" in refused.stderr
    longer = train("--resume", str(run_dir), "--set", "train.epochs=3")  # no --cfg: the config saved in last.pt
    assert longer.returncode == 0, longer.stderr
    assert "Resumed from" in longer.stdout and load_checkpoint(run_dir / "last.pt")["epochs_completed"] == 3
    assert train("--resume", "auto").returncode == 2  # auto needs --cfg to know the experiment


@pytest.fixture(scope="module")
def noise_root(tmp_path_factory):
    """KMNIST files of random images with random labels: the loss stays high, so the gradients
    stay large enough for a change in the order of float sums to reach the weights."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for split, size in (("train", 128), ("test", 32)):
        arrays = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8), rng.integers(0, 10, size, dtype=np.uint8)
        for name, array in zip(IDX_FILES[split], arrays):
            with gzip.open(folder / name, "wb") as file:
                file.write(idx_bytes(array))
    return folder


def test_a_resumed_run_keeps_its_thread_count_and_ends_bit_identical(noise_root, tmp_path, monkeypatch, capsys):
    """Started when threads=None chose 1, resumed when it would choose 2: the resumed run uses 1
    and ends with exactly the weights of the uninterrupted run (with 2 threads they differ)."""
    def train(exp_name, epochs, chosen, resume=None):
        monkeypatch.setattr("utils.threads.default_threads", lambda run_once, cores: (chosen, "patched"))
        cfg = load_config("mlp", overrides(noise_root, tmp_path, "threads=None", f"exp_name='{exp_name}'",
                                           f"train.epochs={epochs}", "train.scheduler='constant'"))
        train_experiment(cfg, resume=resume)
        return load_checkpoint(tmp_path / exp_name / "last.pt")

    full = train("full", 3, chosen=1)
    assert train("parts", 1, chosen=1)["threads"] == 1
    capsys.readouterr()
    resumed = train("parts", 3, chosen=2, resume="auto")
    assert "Threads: 1, as when the run started" in capsys.readouterr().out
    assert resumed["threads"] == 1 and resumed["epochs_completed"] == 3
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
