"""Per-step training metrics on the device: values, read-back without host syncs, skipped steps."""
import math

import pytest
import torch

from executors.step.metrics import StepMetrics, batch_balanced_accuracy
from executors.trainer import Trainer
from tests.synthetic_data import prototype_loaders
from utils.config import load_config
from utils.errors import TrainingError
from utils.metrics import accuracy, balanced_accuracy

CPU = torch.device("cpu")
SYNCING = ("item", "tolist", "cpu", "__float__", "__bool__")  # Tensor methods that wait for the device


class RecordingLogger:
    def __init__(self):
        self.steps = []

    def log_step_metrics(self, metrics, step):
        self.steps.append((step, dict(metrics)))


def make_trainer(tmp_path, *overrides):
    cfg = load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                              "train.batch_size=32", *overrides])
    return Trainer(cfg, *prototype_loaders(batch_size=32))


def record_criterion(trainer, log, change=lambda loss, call: loss):
    """Wrap the trainer's criterion: keep (logits, labels, loss, lr) of every call, on the device;
    `change(loss, call_number)` may alter the loss (call numbers start at 1)."""
    criterion = trainer.criterion

    def recorded(logits, labels):
        loss = change(criterion(logits, labels), len(log) + 1)
        log.append((logits.detach().clone(), labels.clone(), loss.detach().clone(),
                    trainer.optimizer.param_groups[0]["lr"]))
        return loss
    trainer.criterion = recorded


@pytest.mark.parametrize("num_classes", [2, 10, 37])
def test_batch_balanced_accuracy_equals_the_metric(num_classes):
    """Same value as utils.metrics.balanced_accuracy (sklearn's definition) on random batches,
    absent classes included; the two sum in different orders, so they may differ in the last bit."""
    generator = torch.Generator().manual_seed(num_classes)
    exact = 0
    for size in (1, 2, 7, 32, 256):
        for _ in range(40):
            labels = torch.randint(0, num_classes, (size,), generator=generator)
            wrong = torch.randint(0, num_classes, (size,), generator=generator)
            predictions = torch.where(torch.rand(size, generator=generator) < 0.6, labels, wrong)
            value = batch_balanced_accuracy(labels, predictions, num_classes).item()
            expected = balanced_accuracy(labels, predictions, num_classes)
            assert value == pytest.approx(expected, rel=0, abs=4e-16)
            exact += value == expected
    assert exact >= 0.8 * 200
    assert batch_balanced_accuracy(torch.tensor([3, 3, 1]), torch.tensor([3, 0, 1]), 5).item() == 0.75


def test_step_metrics_rows_epoch_means_and_nonfinite_run():
    metrics = StepMetrics(3, CPU)
    labels = torch.tensor([0, 1, 2, 2])
    metrics.add(1, 0.1, torch.tensor(2.0), torch.tensor([0, 1, 1, 1]), labels)
    metrics.add(2, 0.2, torch.tensor(float("nan")), labels[:2], labels[:2], skipped=torch.tensor(True))
    assert len(metrics) == 2
    rows = metrics.read()
    assert len(metrics) == 0 and metrics.read() == []
    assert rows[0] == {"step": 1, "loss": 2.0, "accuracy": 0.5, "balanced_accuracy": pytest.approx(2 / 3),
                       "lr": 0.1, "skipped": 0, "size": 4}
    assert rows[1]["skipped"] == 1 and math.isnan(rows[1]["loss"]) and rows[1]["accuracy"] == 1.0
    means = metrics.epoch_means()
    assert means["accuracy"] == 4 / 6 and means["images"] == 6 and means["skipped_steps"] == 1
    assert metrics.nonfinite_streak == 1 and metrics.nonfinite_since == 2
    assert metrics.divergence(2, 0) is None and metrics.divergence(None, 0) is None
    error = metrics.divergence(1, 3)
    assert isinstance(error, TrainingError) and "at step 2" in str(error) and "epoch (3)" in str(error)
    assert "No epoch was completed" in str(metrics.divergence(5, 0, weights_finite=False))
    metrics.start_epoch()
    metrics.add(3, 0.3, torch.tensor(1.0), labels, labels)
    metrics.read()
    assert metrics.nonfinite_streak == 0 and metrics.epoch_means()["images"] == 4


def test_train_epoch_reads_back_once_per_flush_and_logs_every_step(tmp_path, monkeypatch):
    """12 steps, logger.flush_every=4: three transfers to the host, and every step logged with
    the loss, accuracy and balanced accuracy of its batch and the lr it was trained with."""
    trainer = make_trainer(tmp_path, "logger.flush_every=4", "train.warmup_epochs=1.0")
    trainer.train_loader = list(trainer.train_loader)[:12]  # a loader is any sized iterable of batches
    trainer.logger, log = RecordingLogger(), []
    record_criterion(trainer, log)
    calls = []
    with monkeypatch.context() as patch:
        for name in SYNCING:
            def counted(self, *args, _original=getattr(torch.Tensor, name), _name=name, **kwargs):
                calls.append(_name)
                return _original(self, *args, **kwargs)
            patch.setattr(torch.Tensor, name, counted)
        result = trainer.train_epoch(0)
    assert len(calls) <= 12 // 4 + 1, calls
    assert [step for step, _ in trainer.logger.steps] == list(range(1, 13))
    lrs = []
    for (step, logged), (logits, labels, loss, lr) in zip(trainer.logger.steps, log):
        predictions = logits.argmax(dim=1)
        assert set(logged) == {"train/loss", "train/accuracy", "train/balanced_accuracy", "train/lr"}
        assert logged["train/loss"] == loss.item() and logged["train/lr"] == lr
        assert logged["train/accuracy"] == accuracy(labels, predictions)
        assert logged["train/balanced_accuracy"] == pytest.approx(balanced_accuracy(labels, predictions, 10),
                                                                  abs=4e-16)
        lrs.append(lr)
    assert lrs == sorted(lrs) and lrs[0] < lrs[-1]  # warmup: the lr of each step, not of the epoch
    losses = [logged["train/loss"] for _, logged in trainer.logger.steps]
    assert result["loss"] == pytest.approx(sum(losses) / 12, rel=1e-12) and result["images"] == 12 * 32
    assert result["accuracy"] == pytest.approx(
        sum(logged["train/accuracy"] for _, logged in trainer.logger.steps) / 12, rel=1e-12)
    assert result["skipped_steps"] == 0


def test_steps_skipped_by_the_grad_scaler_are_counted(tmp_path):
    """A GradScaler (here on the CPU) skips steps with inf gradients; the count comes back with
    the other step values, and the weights do not move on a skipped step."""
    trainer = make_trainer(tmp_path, "logger.flush_every=100")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer.train_loader = list(trainer.train_loader)[:6]
    weights, log = [], []
    record_criterion(trainer, log, lambda loss, call: loss * float("inf") if call in (2, 5) else loss)
    trainer.optimizer.register_step_post_hook(lambda *args: weights.append(trainer.global_step))
    result = trainer.train_epoch(0)
    assert result["skipped_steps"] == 2
    assert weights == [0, 2, 3, 5]  # the optimizer stepped before global steps 1, 3, 4 and 6 only
    assert trainer.scaler.get_scale() == 1024.0 / 4


def test_make_step_returns_the_batch_values(tmp_path):
    trainer = make_trainer(tmp_path, "train.scheduler='constant'")
    log = []
    record_criterion(trainer, log)
    batch = next(iter(trainer.train_loader))
    step = trainer.make_step(batch)
    logits, labels, loss, _ = log[0]
    assert step["loss"] == loss.item() and step["lr"] == pytest.approx(0.05) and step["step"] == 1
    assert step["accuracy"] == accuracy(labels, logits.argmax(dim=1)) and step["skipped"] == 0
