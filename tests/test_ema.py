"""Weight EMA (train.ema_decay): the update rule, its warm-up, checkpoints, exact resume, the
choice between the trained weights and their EMA for best.pt, and the config check."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from executors.checkpoints.checkpoint import load_checkpoint
from executors.checkpoints.inference import load_trained
from executors.tools.ema import WeightEma, ema_decay, select
from tests.trainer_runs import assert_same_run, make_trainer, straight_and_resumed
from utils.config import load_config

REPO = Path(__file__).resolve().parents[1]


def mlp_cfg(tmp_path, *overrides):
    return load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                               "train.epochs=2", "train.batch_size=32", *overrides])


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_follows_the_hand_computed_update_over_three_steps(warmup):
    """ema = d_t * ema + (1 - d_t) * weights for parameters and float buffers, integer buffers
    copied; d_t = min(d, (1 + t) / (10 + t)) with the warm-up."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = WeightEma(model, 0.9, warmup)
    expected = {name: value.clone() for name, value in model.state_dict().items()}
    decays = [0.1, 2 / 11, 3 / 12] if warmup else [0.9, 0.9, 0.9]
    assert [ema_decay(0.9, warmup, t) for t in range(3)] == decays
    for decay in decays:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model(torch.randn(8, 4))  # training mode: BatchNorm updates its running statistics
        ema.update()
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                close = decay * expected[name].double() + (1 - decay) * value.double()
                expected[name] = torch.lerp(expected[name], value, 1 - decay)  # the same float ops
                torch.testing.assert_close(expected[name].double(), close, rtol=0, atol=1e-6)
            else:
                expected[name] = value.clone()
    for name, value in ema.module.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert ema.state_dict()["updates"] == 3 and ema.module.state_dict()["1.num_batches_tracked"] == 3
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in ema.module.parameters())


def test_ema_is_off_by_default_and_adds_nothing_to_checkpoints(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path))
    assert trainer.ema is None
    trainer.save_model(tmp_path / "plain.pt")
    assert not {"ema", "weights", "trained_model"} & set(load_checkpoint(tmp_path / "plain.pt"))


def test_interrupted_and_resumed_run_with_ema_ends_bit_equal(tmp_path):
    straight, parts = straight_and_resumed(mlp_cfg, tmp_path, "train.ema_decay=0.9", "train.ema_warmup=True",
                                           "train.warmup_epochs=1.0")
    assert_same_run(straight, parts)
    assert straight["ema"]["updates"] == parts["ema"]["updates"] == straight["global_step"]
    for name, tensor in straight["ema"]["weights"].items():
        assert torch.equal(tensor, parts["ema"]["weights"][name]), name
        assert not torch.equal(tensor, straight["model"][name])  # an average, not a copy


def test_each_epoch_evaluates_both_weights_and_best_pt_holds_the_better(tmp_path, capsys):
    trainer = make_trainer(mlp_cfg(tmp_path, "train.ema_decay=0.5"))
    (tmp_path / "run").mkdir()
    summary = trainer.fit(tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert rows[-1]["selected_weights"] in ("raw", "ema") and float(rows[-1]["ema_test_accuracy"]) > 0.5
    assert "EMA test acc" in capsys.readouterr().out
    best_row = rows[summary["best_epoch"] - 1]
    prefix = "ema_" if best_row["selected_weights"] == "ema" else ""
    assert summary["best_weights"] == best_row["selected_weights"]
    assert summary["best_test_accuracy"] == pytest.approx(float(best_row[f"{prefix}test_accuracy"]), abs=1e-6)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["weights"] == summary["best_weights"]
    # a best.pt whose EMA was the better: "model" holds the EMA weights, which evaluate.py loads
    trainer.save_model(tmp_path / "ema_best.pt", "ema")
    saved = load_checkpoint(tmp_path / "ema_best.pt")
    assert saved["weights"] == "ema"
    for name, tensor in trainer.ema.module.state_dict().items():
        assert torch.equal(saved["model"][name], tensor) and torch.equal(saved["ema"]["weights"][name], tensor)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(saved["trained_model"][name], tensor)
    capsys.readouterr()
    _, model, _ = load_trained(tmp_path / "ema_best.pt")  # what evaluate.py and predict.py load
    assert "weights: the EMA of the trained weights (train.ema_decay=0.5)" in capsys.readouterr().err
    for name, tensor in trainer.ema.module.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
    resumed = make_trainer(mlp_cfg(tmp_path, "train.ema_decay=0.5"))
    resumed.load_model(tmp_path / "ema_best.pt")  # a resume takes the trained weights back
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor)


def test_select_prefers_the_ema_only_when_better_on_the_selection_split():
    def metrics(accuracy):
        return {"accuracy": accuracy}
    on_test = {"test": metrics(0.5), "val": None, "ema_test": metrics(0.6), "ema_val": None}
    assert select(on_test) == (0.6, "ema")
    assert select({**on_test, "ema_test": metrics(0.5)}) == (0.5, "raw")  # a tie keeps the trained weights
    on_val = {"test": metrics(0.1), "val": metrics(0.7), "ema_test": metrics(0.9), "ema_val": metrics(0.6)}
    assert select(on_val) == (0.7, "raw")
    assert select({**on_test, "ema_test": None}) == (0.5, "raw")


@pytest.mark.parametrize("decay", ["0.0", "1.0", "1.5", "-0.1"])
def test_a_decay_outside_0_1_is_a_config_error(tmp_path, decay):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--cfg", "mlp", "--set",
                             f"train.ema_decay={decay}", f"exp_dir='{tmp_path}'"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "train.ema_decay" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
