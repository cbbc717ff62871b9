"""Hardening II items 1, 15 and 17: no write follows a link planted in a run folder; evaluate.py
prints its metrics when the image cannot be written; a device this machine lacks is refused
before any data work; predict.py predicts every readable file.

Links point to a file (or folder) outside the run folder, in the test's tmp folder; each test
checks that the outside file is byte-identical afterwards."""
import errno
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

import utils.atomic_files
from datasets.synthetic import write_kmnist_idx
from executors.launch import train_experiment
from executors.run_folders.run_dir import run_dir_lock
from utils.atomic_files import copy_file_atomic, save_figure_atomic, write_text_atomic
from utils.config import load_config
from utils.errors import ConfigError, StorageError
from utils.file_lock import exclusive_lock

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = b"a user's file outside the run folder\n"


def load_script(name):
    """scripts/<name>.py as a module, to call its main() in this process."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name, monkeypatch, *args) -> int:
    """Call scripts/<name>.py's main() with `args` as its command line, as utils.cli.run does:
    returns its exit status (0, or SystemExit's)."""
    module = load_script(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args)])
    monkeypatch.setattr("utils.interrupts.install", lambda: None)  # pytest keeps its own signal handlers
    try:
        module.run(module.main)
    except SystemExit as exit:
        return exit.code
    return 0


def outside_file(tmp_path) -> Path:
    path = tmp_path / "elsewhere" / "precious.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(OUTSIDE)
    return path


def kmnist_cfg(base: Path, *overrides):
    return load_config("mlp", [f"data.root='{base / 'data'}'", "data.md5=None", "data.download=False",
                               "device='cpu'", "logger.backend='none'", f"exp_dir='{base / 'runs'}'",
                               "train.batch_size=32", "threads=1", "train.confusion_matrix_every_epoch=True",
                               *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of one epoch on synthetic KMNIST: (its folder, the base folder holding data/)."""
    base = tmp_path_factory.mktemp("links")
    write_kmnist_idx(base / "data", train_per_class=20, test_per_class=5)
    train_experiment(kmnist_cfg(base, "train.epochs=1"))
    return base / "runs" / "mlp_base", base


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the trained run in this test's folder (as a run folder made elsewhere)."""
    run_dir, base = trained
    copy = tmp_path / "runs" / "mlp_base"
    shutil.copytree(run_dir, copy)
    return copy, base


def resume(run_dir, base, *overrides):
    cfg = kmnist_cfg(base, "train.epochs=2", *overrides)
    cfg.exp_dir = str(run_dir.parent)
    return train_experiment(cfg, resume=str(run_dir / "last.pt"))


# ---------------------------------------------------------------- item 1: lock files


@pytest.mark.parametrize("kind", ["symbolic", "hard"])
def test_a_run_lock_planted_as_a_link_is_refused_and_its_target_kept(tmp_path, kind):
    outside = outside_file(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (os.symlink if kind == "symbolic" else os.link)(outside, run_dir / ".lock")
    with pytest.raises(StorageError, match=rf"cannot use {run_dir / '.lock'} as a lock file: it is a "
                                           rf"{kind} link.*Files are never written through a link"):
        with run_dir_lock(run_dir):
            pass
    assert outside.read_bytes() == OUTSIDE


def test_a_dangling_lock_link_creates_nothing_where_it_points(tmp_path):
    target = tmp_path / "elsewhere" / "new-file"
    target.parent.mkdir()
    os.symlink(target, tmp_path / ".lock")
    with pytest.raises(StorageError, match="is a symbolic link"):
        with exclusive_lock(tmp_path / ".lock"):
            pass
    assert not target.exists() and not os.path.lexists(target)


def test_resume_of_a_run_whose_lock_is_a_link_refuses_before_writing(run_copy, tmp_path):
    run_dir, base = run_copy
    outside = outside_file(tmp_path)
    (run_dir / ".lock").unlink(missing_ok=True)
    os.symlink(outside, run_dir / ".lock")
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file() and path.name != ".lock"}
    with pytest.raises(StorageError, match=r"\.lock as a lock file: it is a symbolic link"):
        resume(run_dir, base)
    assert outside.read_bytes() == OUTSIDE
    assert {name: (run_dir / name).read_bytes() for name in before} == before


# ---------------------------------------------------------------- item 1: figures and copies


def test_resume_replaces_a_confusion_image_planted_as_a_link(run_copy, tmp_path):
    run_dir, base = run_copy
    outside = outside_file(tmp_path)
    (run_dir / "confusion_matrix_end.png").unlink()
    os.symlink(outside, run_dir / "confusion_matrix_end.png")
    assert resume(run_dir, base)["epochs_completed"] == 2
    assert outside.read_bytes() == OUTSIDE
    image = run_dir / "confusion_matrix_end.png"
    assert not image.is_symlink() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_refuses_a_folder_of_the_run_that_is_a_link(run_copy, tmp_path):
    run_dir, base = run_copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run_dir / "confusion_matrices")
    os.symlink(elsewhere, run_dir / "confusion_matrices")
    with pytest.raises(StorageError, match=(
            rf"cannot write {run_dir / 'confusion_matrices' / 'epoch_002.png'}: {run_dir / 'confusion_matrices'} "
            rf"is a symbolic link \(to {elsewhere}\), and files are never written through a link")):
        resume(run_dir, base)
    assert list(elsewhere.iterdir()) == []


def test_evaluate_replaces_its_image_planted_as_a_link(trained, tmp_path, monkeypatch, capsys):
    run_dir, base = trained
    checkpoint = tmp_path / "best.pt"
    shutil.copy(run_dir / "best.pt", checkpoint)
    outside = outside_file(tmp_path)
    image = tmp_path / "confusion_matrix_best_eval.png"
    os.symlink(outside, image)
    assert run_main("evaluate", monkeypatch, "--checkpoint", checkpoint, "--set", f"data.root='{base / 'data'}'") == 0
    assert json.loads(capsys.readouterr().out)["confusion_matrix_image"] == str(image)
    assert outside.read_bytes() == OUTSIDE
    assert not image.is_symlink() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_atomic_writer_replaces_links_and_refuses_linked_folders_below_inside(tmp_path):
    outside = outside_file(tmp_path)
    source = tmp_path / "config.json"
    source.write_text("{}")
    store = tmp_path / "store"
    artifacts = store / "mlartifacts" / "KMNIST-MLP" / "run1" / "artifacts"
    artifacts.mkdir(parents=True)
    os.symlink(outside, artifacts / "config.json")
    copy_file_atomic(source, artifacts / "config.json", inside=store)
    assert outside.read_bytes() == OUTSIDE and (artifacts / "config.json").read_text() == "{}"

    os.symlink(outside.parent, store / "mlartifacts" / "Other")
    with pytest.raises(StorageError, match=rf"{store / 'mlartifacts' / 'Other'} is a symbolic link"):
        copy_file_atomic(source, store / "mlartifacts" / "Other" / "run2" / "config.json", inside=store)
    with pytest.raises(StorageError, match="is a symbolic link"):
        write_text_atomic(store / "mlartifacts" / "Other" / "x.txt", "x", inside=store)
    assert sorted(p.name for p in outside.parent.iterdir()) == ["precious.txt"]

    linked_store = tmp_path / "linked-store"  # `inside` itself may be a link: the user's choice
    os.symlink(store, linked_store)
    write_text_atomic(linked_store / "mlartifacts" / "new" / "x.txt", "x", inside=linked_store)
    assert (store / "mlartifacts" / "new" / "x.txt").read_text() == "x"


def test_a_figure_is_saved_atomically_in_the_format_of_its_suffix(tmp_path):
    from matplotlib.figure import Figure
    figure = Figure(figsize=(1, 1))
    save_figure_atomic(figure, tmp_path / "a.png", dpi=50)
    save_figure_atomic(figure, tmp_path / "a.pdf")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "a.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png"]


def test_only_the_targets_own_temporaries_are_removed(tmp_path):
    """`.x.<random>.tmp` is a leftover of target x; `.x.y.<random>.tmp` belongs to target x.y."""
    for name in (".x.abc.tmp", ".x.y.def.tmp", ".x.tmp"):
        (tmp_path / name).write_text("")
    write_text_atomic(tmp_path / "x", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.tmp", ".x.y.def.tmp", "x"]


# ---------------------------------------------------------------- item 15: evaluate.py, image not writable


def read_only(monkeypatch):
    """Creating files fails as in a read-only folder (EROFS; root ignores chmod, not a read-only mount)."""
    def refuse(folder, name):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(utils.atomic_files, "open_temporary", refuse)


def test_evaluate_prints_its_metrics_when_the_image_cannot_be_written(trained, monkeypatch, capsys):
    run_dir, base = trained
    read_only(monkeypatch)
    status = run_main("evaluate", monkeypatch, "--checkpoint", run_dir / "best.pt",
                      "--set", f"data.root='{base / 'data'}'")
    out, err = capsys.readouterr()
    metrics = json.loads(out)
    assert status == 0 and metrics["confusion_matrix_image"] is None
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
    image = run_dir / "confusion_matrix_best_eval.png"
    assert err.strip().splitlines() == [
        f"warning: cannot write {image}: read-only file system (EROFS). The metrics above are complete; pass "
        f"--out DIR to write the confusion matrix image to a writable folder."]
    assert not image.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder: permissions are not enforced")
def test_evaluate_on_a_read_only_checkpoint_folder(trained, tmp_path, monkeypatch, capsys):
    run_dir, base = trained
    folder = tmp_path / "input"
    folder.mkdir()
    shutil.copy(run_dir / "best.pt", folder / "best.pt")
    folder.chmod(0o555)
    try:
        status = run_main("evaluate", monkeypatch, "--checkpoint", folder / "best.pt",
                          "--set", f"data.root='{base / 'data'}'")
    finally:
        folder.chmod(0o755)
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["confusion_matrix_image"] is None
    assert "permission denied (EACCES). The metrics above are complete; pass --out DIR" in err


# ---------------------------------------------------------------- item 17: a device this machine lacks


@pytest.mark.parametrize("device, gpus, mps, problem, has", [
    ("cuda", 0, False, "CUDA is not available (no GPU that this PyTorch can use)", "cpu"),
    ("cuda:1", 1, False, "there is no cuda:1", "cpu, cuda:0"),
    ("mps", 2, False, "MPS is not available (Apple silicon only)", "cpu, cuda:0, cuda:1"),
])
def test_a_device_this_machine_lacks_is_refused_before_any_data_work(tmp_path, monkeypatch, device, gpus, mps,
                                                                     problem, has):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    def read(*args, **kwargs):
        raise AssertionError("the dataset was read (its statistics computed) before the device was checked")
    monkeypatch.setattr("datasets.kmnist.KMNIST.__init__", read)
    write_kmnist_idx(tmp_path / "data", train_per_class=2, test_per_class=1)
    message = (f"device='{device}' was asked for, but on this machine {problem}; it has {has}. "
               f"Use device='auto' (the best of these) or one of them.")
    with pytest.raises(ConfigError) as error:  # what train.py --cfg ... --set device=... does
        kmnist_cfg(tmp_path, f"device='{device}'", "data.mean=None", "data.std=None")
    assert str(error.value) == message
    cfg = kmnist_cfg(tmp_path, "data.mean=None", "data.std=None")  # a config built elsewhere, then changed
    cfg.device = device
    with pytest.raises(ConfigError) as error:
        train_experiment(cfg)
    assert str(error.value) == message
    assert not (tmp_path / "runs").exists()
