"""The step profiler (executors/benchmark/step_profile.py, scripts/profile_gpu.py) and the busy rows
(executors/benchmark/busy.py) on the CPU: the phases are the Trainer's own step, the figures add
up, and the verdicts follow the numbers."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from executors.benchmark.busy import STEP_VARIANTS, alternating, busy_rows, evaluation_rows
from executors.benchmark.runner import format_busy
from executors.benchmark.step_profile import EAGER_PHASES, phased_step, profile_steps, reading
from tests.trainer_runs import make_trainer
from utils.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def mlp_cfg(tmp_path):
    return load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                               "train.batch_size=32", "train.scheduler='cosine'", "train.warmup_epochs=1.0"])


def test_phased_steps_train_exactly_as_the_trainer(tmp_path):
    straight, phased = make_trainer(mlp_cfg(tmp_path)), make_trainer(mlp_cfg(tmp_path))
    torch.manual_seed(5)
    for batch in list(straight.train_loader)[:4]:
        straight._train_step(batch)
    torch.manual_seed(5)
    batches, marks = iter(list(phased.train_loader)[:4]), []
    for _ in range(4):
        phased_step(phased, batches, marks.append)
    assert marks == list(EAGER_PHASES) * 4
    for (name, a), b in zip(straight.model.state_dict().items(), phased.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.step_metrics.read() == phased.step_metrics.read()
    assert straight.optimizer.param_groups[0]["lr"] == phased.optimizer.param_groups[0]["lr"]


def test_profile_on_the_cpu_adds_up(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path))
    per_epoch = len(trainer.train_loader)
    profile = profile_steps(trainer, steps=per_epoch + 2)  # the loader is started again within each pass
    assert list(profile["host_ms"]) == list(EAGER_PHASES) and list(profile["gpu_ms"]) == list(EAGER_PHASES)
    assert all(ms > 0 for ms in profile["gpu_ms"].values())  # on the CPU: the host's times of the second pass
    assert profile["gpu_ms_per_step"] == pytest.approx(sum(profile["gpu_ms"].values()))
    assert profile["host_ms_per_step"] == pytest.approx(sum(profile["host_ms"].values()))
    assert profile["images_per_second"] == pytest.approx(1000 * 32 / profile["ms_per_step"])
    assert 0 < profile["host_ms_per_step"] <= 1.5 * profile["ms_per_step"]
    assert profile["steps"] == per_epoch + 2 and profile["cuda_graph"] is False and profile["isolation_held"]
    assert profile["reading"].startswith("on the CPU")
    assert trainer.global_step == per_epoch + 2 * (per_epoch + 2)  # warm-up epoch, free-running and isolated passes


def test_reading_names_what_limits_the_step():
    profile = {"ms_per_step": 50.0, "host_ms_per_step": 48.0, "gpu_ms_per_step": 28.0,
               "gpu_ms": {"input": 6.0, "forward": 8.0, "backward": 14.0}}
    assert reading(profile).startswith("host-bound: the host needs 48.0 of the 50.0 ms per step, the GPU works 28.0")
    assert reading(profile).endswith("largest GPU phases: backward 14.0 ms, forward 8.0 ms, input 6.0 ms")
    assert reading({**profile, "host_ms_per_step": 20.0, "gpu_ms_per_step": 47.0}).startswith("device-bound")
    assert reading({**profile, "gpu_ms_per_step": 46.0}).startswith("device-bound")  # both near the wall


def test_alternating_rounds_call_each_side_once_per_round_in_order():
    calls, values = [], {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}
    runs = {name: (lambda name=name: calls.append(name) or next(values[name])) for name in values}
    stats = alternating(runs, 3)
    assert calls == ["a", "b"] * 3
    assert stats["a"] == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    assert stats["b"]["median"] == 20.0


def test_busy_rows_run_on_the_cpu(tmp_path):
    result = busy_rows(tmp_path, torch.device("cpu"), rounds=1, per_class=1, size=32, bare_steps=1,
                       profile_steps_=2, configs=(("resnet50_tricks", "ResNet50"),))
    model = result["models"]["resnet50_tricks"]
    assert set(model["images_per_second"]) == set(STEP_VARIANTS) | {"bare"}
    for name, fraction in model["fraction_of_bare"].items():
        assert fraction == pytest.approx(model["images_per_second"][name]["median"]
                                         / model["images_per_second"]["bare"]["median"])
    assert model["loader"] == "DeviceLoader"
    assert model["profiles"]["eager"]["cuda_graph"] is False  # no graph on the CPU
    versus = result["ours_vs_torchvision"]
    assert versus["ratio"] == pytest.approx(versus["ours_b"]["median"] / versus["torchvision"]["median"])
    table = format_busy(result)
    assert "resnet50_tricks  graph_built_ahead" in table and "bare:" in table.splitlines()[-1]


def test_evaluation_rows_time_each_batch_size_on_the_same_test_split(tmp_path):
    result = evaluation_rows(tmp_path, torch.device("cpu"), rounds=2, batch_sizes=(8, 32), test_per_class=1, size=32,
                             configs=("resnet50_tricks",))
    rates = result["models"]["resnet50_tricks"]
    assert rates["images"] == 37 and set(rates) == {"8", "32", "images"}
    assert all(len(rates[b]["values"]) == 2 and rates[b]["min"] <= rates[b]["median"] <= rates[b]["max"] > 0
               for b in ("8", "32"))


def test_profile_script_writes_its_json(tmp_path):
    out = tmp_path / "profile.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_gpu.py"), "--cfg", "mlp", "--device", "cpu",
                           "--steps", "3", "--images-per-class", "2", "--set", "train.batch_size=16",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    profile = json.loads(out.read_text())
    assert profile["config"] == "mlp" and profile["batch_size"] == 16 and profile["loader"] == "DeviceLoader"
    assert list(profile["gpu_ms"]) == list(EAGER_PHASES) and profile["steps"] == 3
    assert "free running:" in done.stdout and profile["reading"] in done.stdout
