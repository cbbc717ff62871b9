"""The benchmark's bookkeeping (never its timings): rows, JSON, workload selection, and the
synthetic data it measures on."""
import json
import signal

import pytest
import torch
from easydict import EasyDict
from PIL import Image

from datasets.kmnist import KMNIST
from datasets.oxford_pet import OxfordIIITPet
from datasets.synthetic import pet_training_files, write_kmnist_idx, write_pets
from executors.benchmark import runner
from executors.benchmark.workloads import row
from utils.errors import ConfigError, Interrupted


def test_row_ratio_and_epoch_times():
    result = row("w", (300.0, 1), (100.0, 2), 600, workers=0)
    assert result["ratio"] == 3.0 and result["ours_epoch_seconds"] == 2.0 and result["baseline_epoch_seconds"] == 6.0
    assert result["ours_threads"] == 1 and result["baseline_threads"] == 2 and result["workers"] == 0


def test_run_writes_json_with_the_machine_and_each_selected_workload(tmp_path, monkeypatch, capsys):
    calls = []
    fake = {name: (lambda workdir, quick, device, name=name: calls.append(name) or row(name, (2.0, 1), (1.0, 1), 10))
            for name in runner.CPU_WORKLOADS}
    monkeypatch.setattr(runner, "CPU_WORKLOADS", fake)
    result = runner.run_benchmark(True, "cpu", tmp_path / "out" / "bench.json", ["kmnist_mlp"])
    assert calls == ["kmnist_mlp"]
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved == result and saved["quick"] is True and saved["gpu"] is None
    assert set(saved["machine"]) == {"date", "cpu_count", "cpu", "torch", "device", "gpu"}
    assert saved["workloads"][0]["ratio"] == 2.0
    assert "kmnist_mlp" in capsys.readouterr().out


def test_an_interrupted_run_keeps_the_rows_measured_before_it(tmp_path, monkeypatch):
    def stopped(workdir, quick, device):
        raise KeyboardInterrupt
    fake = {"kmnist_mlp": lambda workdir, quick, device: row("kmnist_mlp", (3.0, 1), (1.0, 1), 10),
            "pets_input_224": stopped}
    monkeypatch.setattr(runner, "CPU_WORKLOADS", fake)
    out = tmp_path / "bench.json"
    with pytest.raises(Interrupted, match="the 1 rows measured before it are in .*bench.json") as caught:
        runner.run_benchmark(True, "cpu", out)
    assert caught.value.signal_number == signal.SIGINT
    saved = json.loads(out.read_text())
    assert [r["workload"] for r in saved["workloads"]] == ["kmnist_mlp"] and saved["workloads"][0]["ratio"] == 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left

    monkeypatch.setattr(runner, "CPU_WORKLOADS", {"pets_input_224": stopped})
    with pytest.raises(Interrupted, match="nothing was saved"):  # stopped in its first workload
        runner.run_benchmark(True, "cpu", tmp_path / "first.json")
    assert not (tmp_path / "first.json").exists()


def test_unknown_workload_is_a_config_error():
    with pytest.raises(ConfigError, match="choose from"):
        runner.run_benchmark(True, "cpu", None, ["kmnist"])


def test_synthetic_data_is_in_the_real_formats(tmp_path):
    write_kmnist_idx(tmp_path / "k", 3, 2)
    train = KMNIST(EasyDict(root=str(tmp_path / "k"), md5=None, mirrors=[], download=False), "train")
    assert len(train) == 30 and train.images.dtype == torch.uint8 and train.class_counts() == [3] * 10
    write_pets(tmp_path / "p", 1, 1, size=None)  # photo-like, every breed
    paths, labels = pet_training_files(tmp_path / "p")
    assert len(paths) == 37 and labels[:3] == [0, 1, 2] and max(labels) == 36
    assert OxfordIIITPet(EasyDict(root=str(tmp_path / "p"), md5=None, mirrors=[], download=False), "train").labels.tolist() == labels
    sizes = [Image.open(p).size for p in paths]
    assert all(max(size) in (500, 1024) for size in sizes)  # as in the release: most 500 px on the longer side
