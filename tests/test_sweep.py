"""Repeated runs: one directory per (config, seed), finished runs skipped, interrupted ones resumed,
failed ones reported while the sweep goes on (and retried in their own folder), Ctrl-C stopping it."""
import csv
import json
import signal

import pytest
import torch

from datasets.synthetic import write_kmnist_idx
from executors.run_folders.sweep import exit_status, parse_seeds, report, run_state, seeded_config, sweep
from utils.errors import ConfigError, Interrupted


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
    assert [(o.name, o.before, o.status) for o in done] == [
        ("mlp_base_seed0", "new", "trained"), ("mlp_base_seed1", "new", "trained"),
        ("mlp_gelu_seed0", "new", "trained"), ("mlp_gelu_seed1", "new", "trained")]
    assert exit_status(done) == 0 and report(done) == "4 runs: 4 trained now, 0 finished earlier, 0 failed"
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert names == ["mlp_base_seed0", "mlp_base_seed1", "mlp_gelu_seed0", "mlp_gelu_seed1"]
    saved = json.loads((tmp_path / "mlp_base_seed1" / "config.json").read_text())
    assert saved["seed"] == 1 and saved["exp_name"] == "mlp_base_seed1"
    seed0, seed1 = (torch.load(tmp_path / f"mlp_base_seed{k}" / "last.pt", weights_only=True)["model"] for k in (0, 1))
    assert not torch.equal(seed0["layers.1.weight"], seed1["layers.1.weight"])  # the seed changes the run

    before = (tmp_path / "mlp_base_seed0" / "last.pt").stat().st_mtime_ns
    assert {o.before for o in sweep(["mlp", "mlp_gelu"], [0, 1], overrides(root, tmp_path, 1))} == {"finished"}
    assert (tmp_path / "mlp_base_seed0" / "last.pt").stat().st_mtime_ns == before
    assert "skipped" in capsys.readouterr().out

    first = list(csv.DictReader((tmp_path / "mlp_base_seed0" / "metrics.csv").open()))
    assert run_state(seeded_config("mlp", 0, overrides(root, tmp_path, 2))) == "interrupted"
    resumed, = sweep(["mlp"], [0], overrides(root, tmp_path, 2))
    assert (resumed.name, resumed.before, resumed.status) == ("mlp_base_seed0", "interrupted", "trained")
    rows = list(csv.DictReader((tmp_path / "mlp_base_seed0" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == first[0]


def test_the_same_seed_reproduces_the_run(root, tmp_path):
    for folder in ("a", "b"):
        sweep(["mlp"], [3], overrides(root, tmp_path / folder, 1))
    a, b = (torch.load(tmp_path / f / "mlp_base_seed3" / "last.pt", weights_only=True)["model"] for f in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


DIVERGING = '''"""The base MLP at an lr that makes the loss non-finite within its first steps."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "diverging"
cfg.train.lr = 1e30
'''


def folders(exp_dir):
    return sorted(p.name for p in exp_dir.iterdir() if p.is_dir())


def test_a_diverging_run_is_reported_and_the_sweep_goes_on(root, tmp_path, capsys):
    """Three configs, the middle one diverges in its first epoch: the third still runs, the
    report lists the failure, exit status 1; a rerun retries it in its own folder."""
    diverging = tmp_path / "diverging_cfg.py"
    diverging.write_text(DIVERGING)
    exp_dir = tmp_path / "runs"
    names = ["mlp", str(diverging), "mlp_gelu"]
    settings = overrides(root, exp_dir, 1) + ["train.max_nonfinite_steps=1"]
    done = sweep(names, [0], settings)
    assert [(o.name, o.before, o.status) for o in done] == [
        ("mlp_base_seed0", "new", "trained"), ("diverging_seed0", "new", "failed"),
        ("mlp_gelu_seed0", "new", "trained")]
    failed = done[1]
    assert failed.folder == exp_dir / "diverging_seed0" and not failed.bad_input
    assert failed.reason.startswith("the training loss became non-finite (NaN or inf) at step ")
    assert len(failed.reason) == 200 and failed.reason.endswith("...") and "\n" not in failed.reason
    assert "error: diverging_seed0 failed, the sweep goes on: the training loss" in capsys.readouterr().err
    assert exit_status(done) == 1
    lines = report(done).splitlines()
    assert lines[0] == "3 runs: 2 trained now, 0 finished earlier, 1 failed:"
    assert lines[1].split() == ["run", "status", "run", "folder", "reason"]
    assert lines[2].startswith(f"diverging_seed0  failed  {exp_dir / 'diverging_seed0'}  the training loss became")
    assert folders(exp_dir) == ["diverging_seed0", "mlp_base_seed0", "mlp_gelu_seed0"]

    again = sweep(names, [0], settings)
    assert [(o.before, o.status) for o in again] == [("finished", "skipped"), ("restart", "failed"),
                                                     ("finished", "skipped")]
    assert "diverging_seed0: restarting in its folder" in capsys.readouterr().out
    assert again[1].folder == exp_dir / "diverging_seed0"
    assert folders(exp_dir) == ["diverging_seed0", "mlp_base_seed0", "mlp_gelu_seed0"]  # no diverging_seed0_1


def test_a_resume_refused_as_bad_input_makes_exit_status_2(root, tmp_path):
    """A rerun with another lr finds the run interrupted, and resuming it with another lr is
    refused (executors/checkpoints/resume.py): reported, exit status 2 (bad input only)."""
    sweep(["mlp"], [0], overrides(root, tmp_path, 1))
    done = sweep(["mlp"], [0], overrides(root, tmp_path, 2) + ["train.lr=0.01"])
    assert [(o.before, o.status, o.bad_input) for o in done] == [("interrupted", "failed", True)]
    assert done[0].reason.startswith(f"Cannot resume {tmp_path / 'mlp_base_seed0' / 'last.pt'} with this config: it "
                                     f"changes what the run was trained with (train.lr: 0.05 -> 0.01)")
    assert exit_status(done) == 2


def test_ctrl_c_stops_the_whole_sweep(root, tmp_path, monkeypatch):
    started = []

    def train(cfg, resume=None):
        started.append(cfg.exp_name)
        if len(started) == 2:
            raise Interrupted(signal.SIGINT, "nothing was saved")
    monkeypatch.setattr("executors.run_folders.sweep.train_experiment", train)
    with pytest.raises(Interrupted):
        sweep(["mlp", "mlp_gelu", "mlp_deep"], [0], overrides(root, tmp_path, 1))
    assert started == ["mlp_base_seed0", "mlp_gelu_seed0"]
