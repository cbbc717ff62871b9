"""The optimisation recipe: lr values at given steps, linear scaling, parameter groups."""
import math

import pytest
import torch
from easydict import EasyDict
from torch import nn

from executors.optim import build_optimizer, build_scheduler, resolve_lr, sync_lr_to_schedule
from utils.errors import ConfigError


class TinyNet(nn.Module):
    """Conv + BatchNorm + Linear: 2 decayed weights, 4 undecayed tensors (2 biases, BN gamma, beta)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 3)

    def weight_decay_params(self):
        return [self.conv.bias, self.bn.weight, self.bn.bias, self.fc.bias], [self.conv.weight, self.fc.weight]


def train_cfg(**changes):
    cfg = EasyDict(epochs=10, batch_size=64, optimizer="SGD", optimizer_args={"momentum": 0.9}, lr=0.1,
                   lr_scaling=None, weight_decay=5e-4, no_bias_decay=False, scheduler="cosine",
                   warmup_epochs=2.0)
    cfg.update(changes)
    return cfg


def lrs_over_run(cfg, steps_per_epoch):
    """The lr used by each of the run's optimizer steps."""
    optimizer = build_optimizer(TinyNet(), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    used = []
    for _ in range(cfg.epochs * steps_per_epoch):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def test_warmup_then_cosine_values():
    lrs = lrs_over_run(train_cfg(), steps_per_epoch=5)  # 50 steps, 10 of warmup
    assert lrs[0] == pytest.approx(0.1 / 10)  # warmup start: lr / W
    assert lrs[9] == pytest.approx(0.1)  # warmup end reaches the full lr
    assert lrs[10] == pytest.approx(0.1)  # cosine starts at the full lr
    assert lrs[30] == pytest.approx(0.05)  # halfway through the 40 cosine steps
    assert lrs[-1] == pytest.approx(0.1 * (1 + math.cos(math.pi * 39 / 40)) / 2)  # last step, near zero
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10])) and all(a > b for a, b in zip(lrs[10:-1], lrs[11:]))


def test_constant_schedule_without_warmup():
    assert set(lrs_over_run(train_cfg(scheduler="constant", warmup_epochs=0.0), 3)) == {0.1}


def test_linear_scaling_rule():
    cfg = train_cfg(batch_size=128, lr_scaling={"base_lr": 0.1, "base_batch_size": 256})
    assert resolve_lr(cfg) == pytest.approx(0.05)
    assert build_optimizer(TinyNet(), cfg).param_groups[0]["lr"] == pytest.approx(0.05)


def test_no_bias_decay_groups():
    model = TinyNet()
    groups = build_optimizer(model, train_cfg(no_bias_decay=True)).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert {id(p) for p in groups[0]["params"]} == {id(model.conv.weight), id(model.fc.weight)}
    assert len(groups[1]["params"]) == 4
    plain = build_optimizer(model, train_cfg()).param_groups
    assert len(plain) == 1 and len(plain[0]["params"]) == 6 and plain[0]["weight_decay"] == 5e-4


def test_scheduler_state_restores_the_same_lr_sequence():
    cfg = train_cfg()
    optimizer = build_optimizer(TinyNet(), cfg)
    scheduler = build_scheduler(optimizer, cfg, 5)
    for _ in range(17):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = build_optimizer(TinyNet(), cfg)
    fresh = build_scheduler(fresh_optimizer, cfg, 5)
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == scheduler.get_last_lr()
    assert fresh.last_epoch == 17


def test_resume_with_more_epochs_follows_the_longer_schedule():
    short, longer = train_cfg(epochs=2, warmup_epochs=0.0), train_cfg(epochs=4, warmup_epochs=0.0)
    optimizer = build_optimizer(TinyNet(), short)
    scheduler = build_scheduler(optimizer, short, 5)
    for _ in range(10):  # the whole short run: its cosine ends at lr 0
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0

    resumed_optimizer = build_optimizer(TinyNet(), longer)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed = build_scheduler(resumed_optimizer, longer, 5)
    resumed.load_state_dict(scheduler.state_dict())
    sync_lr_to_schedule(resumed)
    used = []
    for _ in range(10):
        used.append(resumed_optimizer.param_groups[0]["lr"])
        resumed_optimizer.step()
        resumed.step()
    assert used == pytest.approx([0.05 * (1 + math.cos(math.pi * step / 20)) for step in range(10, 20)], abs=1e-15)


def test_bad_optimizer_and_schedule_names():
    with pytest.raises(ConfigError, match="Did you mean: Adam"):
        build_optimizer(TinyNet(), train_cfg(optimizer="Adan"))
    with pytest.raises(ConfigError, match="do not suit SGD"):
        build_optimizer(TinyNet(), train_cfg(optimizer_args={"betas": (0.9, 0.99)}))
    with pytest.raises(ConfigError, match="train.scheduler='step'"):
        build_scheduler(build_optimizer(TinyNet(), train_cfg()), train_cfg(scheduler="step"), 5)
