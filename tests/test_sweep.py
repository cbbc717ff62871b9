"""Repeated runs: one directory per (config, seed), finished runs skipped, interrupted ones resumed."""
import csv
import json

import pytest
import torch

from executors.sweep import parse_seeds, run_state, seeded_config, sweep
from tests.synthetic_kmnist import write_kmnist_idx
from utils.errors import ConfigError


def overrides(root, exp_dir, epochs):
    return [f"data.root='{root}'", "data.md5=None", "data.download=False", f"exp_dir='{exp_dir}'", "device='cpu'",
            "threads=1", "logger.backend='none'", f"train.epochs={epochs}", "train.scheduler='constant'"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(folder, train_per_class=12, test_per_class=4)
    return folder


@pytest.mark.parametrize("text", ["", "a", "0,-1", "1,1", "0;1"])
def test_bad_seed_lists_are_config_errors(text):
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


def test_sweep_runs_each_seed_once_then_skips_then_resumes(root, tmp_path, capsys):
    done = sweep(["mlp", "mlp_gelu"], [0, 1], overrides(root, tmp_path, 1))
    assert done == [("mlp_base_seed0", "new"), ("mlp_base_seed1", "new"), ("mlp_gelu_seed0", "new"),
                    ("mlp_gelu_seed1", "new")]
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert names == ["mlp_base_seed0", "mlp_base_seed1", "mlp_gelu_seed0", "mlp_gelu_seed1"]
    saved = json.loads((tmp_path / "mlp_base_seed1" / "config.json").read_text())
    assert saved["seed"] == 1 and saved["exp_name"] == "mlp_base_seed1"
    seed0, seed1 = (torch.load(tmp_path / f"mlp_base_seed{k}" / "last.pt", weights_only=True)["model"] for k in (0, 1))
    assert not torch.equal(seed0["layers.1.weight"], seed1["layers.1.weight"])  # the seed changes the run

    before = (tmp_path / "mlp_base_seed0" / "last.pt").stat().st_mtime_ns
    assert {state for _, state in sweep(["mlp", "mlp_gelu"], [0, 1], overrides(root, tmp_path, 1))} == {"finished"}
    assert (tmp_path / "mlp_base_seed0" / "last.pt").stat().st_mtime_ns == before
    assert "skipped" in capsys.readouterr().out

    first = list(csv.DictReader((tmp_path / "mlp_base_seed0" / "metrics.csv").open()))
    assert run_state(seeded_config("mlp", 0, overrides(root, tmp_path, 2))) == "interrupted"
    assert sweep(["mlp"], [0], overrides(root, tmp_path, 2)) == [("mlp_base_seed0", "interrupted")]
    rows = list(csv.DictReader((tmp_path / "mlp_base_seed0" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == first[0]


def test_the_same_seed_reproduces_the_run(root, tmp_path):
    for folder in ("a", "b"):
        sweep(["mlp"], [3], overrides(root, tmp_path / folder, 1))
    a, b = (torch.load(tmp_path / f / "mlp_base_seed3" / "last.pt", weights_only=True)["model"] for f in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
