"""Trainer runs on the prototype data (tests/synthetic_data.py), and the exact-resume harness:
a run trained straight through against the same run stopped after epoch 1 and resumed by a
new Trainer in a process with other random states."""
import torch

from executors.checkpoints.checkpoint import load_checkpoint
from executors.trainer import Trainer
from tests.synthetic_data import prototype_loaders

TIMING_COLUMNS = ("epoch_seconds", "train_images_per_second")  # the only history values a rerun changes


def make_trainer(cfg):
    """A Trainer of `cfg` on the prototype data, batches of cfg.train.batch_size."""
    return Trainer(cfg, *prototype_loaders(batch_size=cfg.train.batch_size))


def straight_and_resumed(make_cfg, tmp_path, *settings) -> tuple:
    """(straight, parts): the last.pt contents of the run of `make_cfg(tmp_path, *settings)`
    trained straight through in tmp_path / "full", and of the same run stopped after epoch 1
    and resumed from its last.pt in tmp_path / "parts"."""
    full = make_trainer(make_cfg(tmp_path, "exp_name='full'", *settings))
    (tmp_path / "full").mkdir()
    full.fit(tmp_path / "full")
    first = make_trainer(make_cfg(tmp_path, "exp_name='parts'", *settings))
    first.cfg.train.epochs = 1  # "interrupted" after one epoch: only its last.pt survives ...
    (tmp_path / "parts").mkdir()
    first.fit(tmp_path / "parts")
    assert load_checkpoint(tmp_path / "parts" / "last.pt")["epochs_completed"] == 1
    torch.manual_seed(12345)  # ... and the new process starts with other RNG states
    resumed = make_trainer(make_cfg(tmp_path, "exp_name='parts'", *settings))
    resumed.load_model(tmp_path / "parts" / "last.pt")
    resumed.fit(tmp_path / "parts")
    return tuple(load_checkpoint(tmp_path / name / "last.pt") for name in ("full", "parts"))


def assert_same_run(straight: dict, parts: dict) -> None:
    """Two runs' last.pt contents hold equal weights (torch.equal), steps and metrics rows
    (the timings aside)."""
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, parts["model"][name]), name
    assert parts["global_step"] == straight["global_step"] and parts["steps"] == straight["steps"]
    untimed = [[{key: value for key, value in row.items() if key not in TIMING_COLUMNS} for row in state["history"]]
               for state in (straight, parts)]
    assert untimed[0] == untimed[1]
