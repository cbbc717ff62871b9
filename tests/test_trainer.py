"""Trainer: learning, one-batch overfitting, run files, checkpoints and exact resume."""
import csv
import json

import pytest
import torch

from executors.checkpoint import load_checkpoint
from executors.trainer import Trainer
from tests.synthetic_data import prototype_loaders
from utils.config import load_config
from utils.errors import CheckpointError

SUMMARY_KEYS = {"exp_name", "model_name", "dataset", "epochs_completed", "best_epoch", "best_test_accuracy",
                "final_test_accuracy", "final_test_balanced_accuracy", "final_test_loss",
                "trainable_parameters", "train_images_per_second", "wall_time_seconds", "device"}


def mlp_cfg(tmp_path, *overrides):
    return load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                               "train.epochs=3", "train.batch_size=32", *overrides])


def make_trainer(cfg):
    return Trainer(cfg, *prototype_loaders(batch_size=cfg.train.batch_size))


def test_short_run_learns_and_writes_the_run_directory(tmp_path):
    cfg = mlp_cfg(tmp_path)
    trainer = make_trainer(cfg)
    assert trainer.evaluate()["accuracy"] < 0.3  # chance is 0.1
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = trainer.fit(run_dir)
    assert summary["final_test_accuracy"] > 0.9
    assert set(summary) == SUMMARY_KEYS
    assert summary["trainable_parameters"] == 159_010 and summary["epochs_completed"] == 3
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert json.loads((run_dir / "config.json").read_text())["train"]["epochs"] == 3
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(summary["final_test_accuracy"], abs=1e-6)
    assert max(float(r["test_accuracy"]) for r in rows) == pytest.approx(summary["best_test_accuracy"], abs=1e-6)
    for image in ("confusion_matrix_start.png", "confusion_matrix_end.png"):
        assert (run_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["epochs_completed"] == summary["best_epoch"]
    assert best["class_names"] == [f"c{i}" for i in range(10)]
    assert best["config"]["exp_name"] == "mlp_base"


def test_step_metrics_are_for_the_batch(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path, "train.scheduler='constant'"))
    batch = next(iter(trainer.train_loader))
    step = trainer.make_step(batch)
    assert step["lr"] == pytest.approx(0.05)
    assert 0.0 <= step["accuracy"] <= 1.0 and step["loss"] > 0
    assert trainer.global_step == 1


def test_bf16_autocast_step_matches_fp32(tmp_path):
    """train.amp='bf16' runs the forward pass in bfloat16 (here on the CPU) and keeps fp32 weights."""
    losses = {}
    for amp in ("off", "bf16"):
        torch.manual_seed(0)
        trainer = make_trainer(mlp_cfg(tmp_path, f"train.amp='{amp}'"))
        batch = next(iter(trainer.train_loader))
        loss, logits = trainer._forward_backward(batch["image"], batch["label"])
        losses[amp] = loss.item()
        assert logits.dtype == (torch.bfloat16 if amp == "bf16" else torch.float32)
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert losses["bf16"] == pytest.approx(losses["off"], rel=2e-2) and losses["bf16"] != losses["off"]


def test_overfitting_on_batch_reaches_100_percent(tmp_path):
    result = make_trainer(mlp_cfg(tmp_path)).overfitting_on_batch(200)
    assert result["accuracy"] == 1.0 and result["steps"] <= 200


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    full = make_trainer(mlp_cfg(tmp_path, "exp_name='full'", "train.warmup_epochs=1.0"))
    (tmp_path / "full").mkdir()
    full.fit(tmp_path / "full")

    first = make_trainer(mlp_cfg(tmp_path, "exp_name='parts'", "train.warmup_epochs=1.0"))
    first.cfg.train.epochs = 1  # "interrupted" after one epoch: only its last.pt survives ...
    (tmp_path / "parts").mkdir()
    first.fit(tmp_path / "parts")
    torch.manual_seed(12345)  # ... and the new process starts with other RNG states
    resumed = make_trainer(mlp_cfg(tmp_path, "exp_name='parts'", "train.warmup_epochs=1.0"))
    first_state = load_checkpoint(tmp_path / "parts" / "last.pt")
    assert first_state["epochs_completed"] == 1
    resumed.load_model(tmp_path / "parts" / "last.pt")
    resumed.fit(tmp_path / "parts")

    final_full = load_checkpoint(tmp_path / "full" / "last.pt")
    final_resumed = load_checkpoint(tmp_path / "parts" / "last.pt")
    for name, tensor in final_full["model"].items():
        assert torch.equal(tensor, final_resumed["model"][name]), name
    assert final_resumed["global_step"] == final_full["global_step"]
    assert [r["test_accuracy"] for r in final_resumed["history"]] == [r["test_accuracy"] for r in final_full["history"]]


def test_checkpoint_for_another_model_is_refused(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path))
    trainer.save_model(tmp_path / "mlp.pt")
    state = torch.load(tmp_path / "mlp.pt", weights_only=True)
    state["model_name"] = "ResNet50"
    torch.save(state, tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="holds a ResNet50 model, but the config asks for MLP"):
        trainer.load_model(tmp_path / "resnet.pt")
    deep_cfg = load_config("mlp_deep", ["device='cpu'", "logger.backend='none'"])
    deep = Trainer(deep_cfg, *prototype_loaders())
    with pytest.raises(CheckpointError, match="does not fit this model's architecture"):
        deep.load_model(tmp_path / "mlp.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        trainer.load_model(tmp_path / "broken.pt")


def test_label_smoothing_matches_the_formula(tmp_path):
    """loss = (1 - eps) * CE(y) + eps * mean_k(-log p_k) (Szegedy et al., 2016; Bag of Tricks, 5.2)."""
    trainer = make_trainer(mlp_cfg(tmp_path, "train.label_smoothing=0.1"))
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 9, 3, 1, 7])
    log_p = torch.log_softmax(logits, dim=1)
    expected = (0.9 * -log_p[torch.arange(6), labels] - 0.1 * log_p.mean(dim=1)).mean()
    assert trainer.criterion(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() != pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-3)
