"""LR range test (executors/tools/lr_finder.py, scripts/lr_find.py): the lr schedule value by value,
the suggestion inside an lr range measured by training, the early stop, untouched originals
and random states, the scaled-lr setting, atomic outputs and the CLI's exit statuses."""
import copy
import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from executors.launch import train_experiment
from executors.optim import resolve_lr
from executors.reporting.lr_find_report import summary_lines, write_lr_find
from executors.tools.lr_finder import (BETA, DIVERGENCE, END_LR, START_LR, STEPS, find_lr, lr_schedule, lr_setting,
                                       range_test, suggestions)
from tests.test_cli import common_args, kmnist_root  # noqa: F401 (a fixture)
from utils.cli import run
from utils.config import apply_overrides, load_config, to_plain
from utils.errors import StorageError, TrainingError
from utils.runtime import Precision

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
CLASSES, FEATURES, SAMPLES, BATCH = 4, 20, 1024, 32


def overlapping_blobs():
    """Batches of a softmax-regression problem with overlapping classes (the best linear model
    misclassifies about a third), whose loss has a finite minimum: too large an lr overshoots it.
    Returns (batches [{"image": [32, 20], "label": [32]}], all features [1024, 20], all labels [1024])."""
    generator = torch.Generator().manual_seed(0)
    centres = 0.3 * torch.randn(CLASSES, FEATURES, generator=generator)
    labels = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    features = centres[labels] + torch.randn(SAMPLES, FEATURES, generator=generator)
    batches = [{"image": features[i:i + BATCH], "label": labels[i:i + BATCH]} for i in range(0, SAMPLES, BATCH)]
    return batches, features, labels


def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(FEATURES, CLASSES))


def sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def loss_after_training(model, batches, features, labels, lr, steps=64):
    """Full-data cross-entropy after `steps` SGD steps at the constant `lr` from `model`'s weights."""
    model = copy.deepcopy(model)
    optimizer = sgd(model, lr)
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = nn.functional.cross_entropy(model(batch["image"]), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return nn.functional.cross_entropy(model(features), labels).item()


def test_the_schedule_is_the_geometric_sequence_from_start_to_end():
    lrs = lr_schedule(1e-7, 10.0, 100)
    assert len(lrs) == 100 and lrs[0] == 1e-7 and lrs[-1] == pytest.approx(10.0, rel=1e-12)
    for k in (1, 33, 50, 98):
        assert lrs[k] == pytest.approx(1e-7 * 10 ** (8 * k / 99), rel=1e-12)
    assert np.allclose(np.diff(np.log(lrs)), math.log(1e8) / 99, rtol=1e-9)
    assert lr_schedule(1e-3, 1.0, 4) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)
    with pytest.raises(ValueError):
        lr_schedule(1.0, 0.1, 10)


class RecordingSGD(torch.optim.SGD):
    """SGD that notes (lr, weight_decay) of every param group at each step (in a class
    attribute, which the range test's deep copy shares)."""
    seen = []

    def step(self, closure=None):
        RecordingSGD.seen.append([(group["lr"], group["weight_decay"]) for group in self.param_groups])
        return super().step(closure)


def test_every_param_group_steps_at_the_schedules_lr_with_its_own_weight_decay():
    batches, _, _ = overlapping_blobs()
    model = linear_model()
    weight, bias = model[1].weight, model[1].bias
    optimizer = RecordingSGD([{"params": [weight], "weight_decay": 1e-4}, {"params": [bias], "weight_decay": 0.0}],
                             lr=0.5, momentum=0.9)
    RecordingSGD.seen.clear()
    lrs = lr_schedule(1e-6, 1e-2, 40)  # low enough not to stop early; more steps than batches: repeated
    record = range_test(model, optimizer, batches, nn.CrossEntropyLoss(), lrs, CPU)
    assert record["stopped"] is None and record["lrs"] == lrs
    assert RecordingSGD.seen == [[(lr, 1e-4), (lr, 0.0)] for lr in lrs]
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.5]  # the original is not changed


def test_the_losses_are_smoothed_by_the_bias_corrected_moving_average():
    batches, _, _ = overlapping_blobs()
    model = linear_model()
    record = range_test(model, sgd(model), batches, nn.CrossEntropyLoss(), lr_schedule(1e-6, 1e-3, 12), CPU)
    average = 0.0
    for step, (loss, smoothed) in enumerate(zip(record["losses"], record["smoothed"])):
        average = BETA * average + (1 - BETA) * loss
        assert smoothed == pytest.approx(average / (1 - BETA ** (step + 1)), rel=1e-12)
    assert record["smoothed"][0] == record["losses"][0]


def test_the_suggestion_lands_in_the_lr_range_that_trains_well():
    batches, features, labels = overlapping_blobs()
    model = linear_model()
    with torch.no_grad():
        initial = nn.functional.cross_entropy(model(features), labels).item()
    grid = [10.0 ** (k / 2) for k in range(-8, 5)]  # 1e-4 ... 100, half a decade apart
    final = {lr: loss_after_training(model, batches, features, labels, lr) for lr in grid}
    best = min(final.values())
    good = [lr for lr in grid if final[lr] <= best + 0.1 * (initial - best)]
    diverging = [lr for lr in grid if not final[lr] < initial]
    assert len(good) >= 2 and diverging and max(good) < min(diverging)  # the problem has a range to find
    record = range_test(model, sgd(model), batches, nn.CrossEntropyLoss(), lr_schedule(START_LR, END_LR, STEPS), CPU)
    found = suggestions(record["lrs"], record["smoothed"], STEPS)
    assert found["falling"]
    for method in ("steep", "minimum"):
        assert min(good) <= found[method] <= max(good), (method, found, good)


def test_the_test_stops_once_the_smoothed_loss_explodes():
    batches, _, _ = overlapping_blobs()
    model = linear_model()
    record = range_test(model, sgd(model), batches, nn.CrossEntropyLoss(), lr_schedule(1e-3, 1e4, 100), CPU)
    smoothed = record["smoothed"]
    assert 10 < len(smoothed) < 100 and record["stopped"].startswith(f"step {len(smoothed)} of 100")
    assert smoothed[-1] > DIVERGENCE * min(smoothed[:-1])
    assert all(smoothed[k] <= DIVERGENCE * min(smoothed[:k + 1]) for k in range(len(smoothed) - 1))


def test_the_test_stops_at_the_first_non_finite_loss():
    batches, _, _ = overlapping_blobs()
    batches[5] = {"image": torch.full_like(batches[5]["image"], math.nan), "label": batches[5]["label"]}
    model = linear_model()
    record = range_test(model, sgd(model), batches, nn.CrossEntropyLoss(), lr_schedule(1e-6, 1e-3, 30), CPU)
    assert len(record["losses"]) == 6 and math.isnan(record["losses"][-1])
    assert "not finite" in record["stopped"]


def test_steep_is_searched_on_the_descent_only_and_minimum_is_a_tenth_of_the_lowest():
    lrs = lr_schedule(1e-4, 1e4, 20)
    smoothed = [4.0, 4.0, 3.9, 3.5, 3.4, 3.3, 3.2, 3.1, 3.0, 6.0, 9.0, 4.0, 3.5, 3.4, 3.3, 3.3, 3.3, 3.3, 3.3, 3.3]
    found = suggestions(lrs, smoothed, 20)  # window: points 2 .. 14; lowest at 8; the fall 9 -> 11 is recovery
    assert found == {"steep": lrs[2], "minimum": lrs[8] / 10, "falling": True}
    flat = suggestions(lrs, [3.0] * 20, 20)
    assert flat == {"steep": lrs[2], "minimum": lrs[2] / 10, "falling": False}


def test_a_loss_that_explodes_at_once_gives_no_suggestion_but_an_error():
    with pytest.raises(TrainingError, match="too soon"):
        suggestions(lr_schedule(1, 10, 100)[:12], [1.0] * 12, 100)


def test_originals_and_every_random_state_are_left_as_they_were():
    batches, _, _ = overlapping_blobs()
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(FEATURES, CLASSES))  # dropout draws from torch
    optimizer = sgd(model)
    weights = copy.deepcopy(model.state_dict())
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    range_test(model, optimizer, batches, nn.CrossEntropyLoss(), lr_schedule(1e-4, 1e-1, 20), CPU)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert all(torch.equal(weights[key], value) for key, value in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {} and model.training


def test_bf16_autocast_on_the_cpu_gives_finite_losses_near_fp32():
    batches, _, _ = overlapping_blobs()
    model = linear_model()
    lrs = lr_schedule(1e-6, 1e-3, 10)
    fp32 = range_test(model, sgd(model), batches, nn.CrossEntropyLoss(), lrs, CPU)
    bf16 = range_test(model, sgd(model), batches, nn.CrossEntropyLoss(), lrs, CPU, Precision(torch.bfloat16))
    assert bf16["losses"] != fp32["losses"]  # autocast ran the Linear in bf16
    assert bf16["losses"] == pytest.approx(fp32["losses"], rel=0.02)


@pytest.mark.parametrize("scaling, batch_size, key, factor", [
    (None, 64, "train.lr", 1.0),
    ({"base_lr": 0.1, "base_batch_size": 256}, 64, "train.lr_scaling.base_lr", 4.0),
    ({"base_lr": 0.1, "base_batch_size": 256}, 512, "train.lr_scaling.base_lr", 0.5),
])
def test_the_setting_trains_at_the_suggested_lr(scaling, batch_size, key, factor):
    cfg = load_config("mlp", [f"train.lr_scaling={scaling}", f"train.batch_size={batch_size}"])
    found_key, value = lr_setting(cfg.train, 0.0123)
    assert (found_key, value) == (key, pytest.approx(0.0123 * factor, rel=1e-12))
    apply_overrides(cfg, [f"{found_key}={value!r}"])
    assert resolve_lr(cfg.train) == pytest.approx(0.0123, rel=1e-12)


def kmnist_overrides(root, exp_dir):
    """test_cli's settings (after its "--set") for the synthetic KMNIST files; one epoch on one thread."""
    return [*common_args(root, exp_dir)[1:], "threads=1", "logger.backend='none'", "train.epochs=1"]


def test_a_training_run_is_the_same_with_an_lr_find_before_it(kmnist_root, tmp_path):
    cfg = load_config("mlp", kmnist_overrides(kmnist_root, tmp_path / "alone"))
    train_experiment(cfg)
    cfg = load_config("mlp", kmnist_overrides(kmnist_root, tmp_path / "after"))
    before = to_plain(cfg)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    record = find_lr(cfg, steps=20, start_lr=1e-4, end_lr=1.0)  # seeds, shuffles, draws per item meanwhile
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert to_plain(cfg) == before and len(record["lrs"]) == 20
    train_experiment(cfg)
    alone, after = (torch.load(tmp_path / folder / "mlp_base" / "last.pt", weights_only=True)["model"]
                    for folder in ("alone", "after"))
    assert all(torch.equal(alone[key], after[key]) for key in alone)


def sample_record(**changes):
    lrs = lr_schedule(1e-4, 1.0, 30)
    losses = [2.3 - 0.05 * k for k in range(25)] + [2.0, 4.0, 9.0, 30.0, math.inf]
    return {"exp_name": "mlp_base", "batch_size": 64, "steps": 30, "beta": BETA, "lrs": lrs, "losses": losses,
            "smoothed": losses[:-1] + [math.inf], "stopped": "step 30 of 30", "falling": True, "method": "steep",
            "suggestions": {"steep": 1e-3, "minimum": 2e-3}, "suggestion": 1e-3, "config_lr": 0.05,
            "setting": {"key": "train.lr", "value": 1e-3}, **changes}


def test_outputs_are_a_strict_json_and_a_png(tmp_path):
    json_path, figure_path = write_lr_find(sample_record(), tmp_path / "out")
    written = json.loads(json_path.read_text())  # allow_nan=False on the writer's side: strict JSON
    assert written["losses"][-1] is None and written["lrs"] == sample_record()["lrs"]
    with Image.open(figure_path) as image:
        assert image.format == "PNG" and image.size[0] >= 700


@pytest.mark.parametrize("failing_write", [0, 1], ids=["json", "png"])
def test_each_output_is_replaced_atomically_or_not_at_all(tmp_path, monkeypatch, failing_write):
    for name in ("lr_find.json", "lr_find.png"):
        (tmp_path / name).write_text("old")
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) - 1 == failing_write:
            raise OSError(28, "No space left on device")
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError, match="No space left|no space left"):
        write_lr_find(sample_record(), tmp_path)
    names = ("lr_find.json", "lr_find.png")
    assert (tmp_path / names[failing_write]).read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary left behind
    if failing_write == 1:
        assert json.loads((tmp_path / names[0]).read_text())["suggestion"] == 1e-3


def test_summary_of_a_test_that_ran_to_the_end_says_how_high_the_loss_rose():
    smoothed = [3.0, 2.0, 1.0, 1.5, 2.5, 2.0]
    lines = summary_lines(sample_record(stopped=None, divergence=DIVERGENCE, smoothed=smoothed))
    assert lines[0] == ("ran all 30 steps: the smoothed loss stayed below 4x its lowest (at most 2.50x after it); "
                        "a higher --end-lr may show where it blows up")


def test_summary_names_the_base_lr_of_a_scaled_config():
    lines = summary_lines(sample_record(setting={"key": "train.lr_scaling.base_lr", "value": 4e-3}))
    assert lines[-1] == "to train at it: --set train.lr_scaling.base_lr=0.004"
    assert "base lr 0.004 gives 0.001 at batch 64" in lines[-2]


def run_lr_find(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "lr_find.py"), *args], capture_output=True,
                          text=True, timeout=600)


def test_cli_writes_the_figure_and_json_into_the_experiment_folder(kmnist_root, tmp_path):
    result = run_lr_find("--cfg", "mlp", "--steps", "40", "--set", *kmnist_overrides(kmnist_root, tmp_path),
                         "train.lr_scaling={'base_lr': 0.1, 'base_batch_size': 256}")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "lr_find" / "mlp_base"
    record = json.loads((out / "lr_find.json").read_text())
    assert record["config"] == "mlp" and record["lrs"] == pytest.approx(lr_schedule(START_LR, END_LR, 40)[:len(
        record["lrs"])], rel=1e-12)
    assert record["method"] == "minimum" and record["suggestion"] == record["suggestions"]["minimum"]
    assert record["config_lr"] == pytest.approx(0.1 * 32 / 256)
    assert record["setting"]["value"] == pytest.approx(record["suggestion"] * 256 / 32)
    assert f"--set train.lr_scaling.base_lr={record['setting']['value']:.3g}" in result.stdout
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_in_process(monkeypatch, *args):
    """scripts/lr_find.py's main under utils.cli.run, as from the shell; returns the exit status."""
    spec = importlib.util.spec_from_file_location("lr_find_script", REPO / "scripts" / "lr_find.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["lr_find.py", *args])
    with pytest.raises(SystemExit) as exit_:
        run(script.main)
    return exit_.value.code


@pytest.mark.parametrize("args, message", [
    (["--cfg", "mlpp"], "No config named 'mlpp'"),
    (["--cfg", "mlp", "--set", "train.lrr=0.1"], "Unknown config key 'train.lrr'"),
    (["--cfg", "mlp", "--set", "train.lr=-1"], "train.lr"),
    (["--cfg", "mlp", "--set", "model.layers=[('Flatten', {}), ('Linear', {'in_features': 100, 'out_features': 10})]"],
     "model.layers"),
    (["--cfg", "mlp", "--steps", "1"], "--steps must be at least 2"),
    (["--cfg", "mlp", "--start-lr", "1", "--end-lr", "0.1"], "--start-lr below --end-lr"),
    (["--cfg", "mlp", "--end-lr", "inf"], "argument --end-lr"),
])
def test_bad_input_exits_2_with_one_message_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    status = run_in_process(monkeypatch, *args, *(["--set"] if "--set" not in args else []), f"exp_dir='{tmp_path}'")
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
