"""compare_runs: one ranking per dataset, --dataset, lr and batch size columns."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from executors.reporting.compare import collect_summaries, comparison, select_dataset
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def write_run(exp_dir, name, dataset, accuracy, train=None, in_summary=True):
    run_dir = exp_dir / name
    run_dir.mkdir(parents=True)
    summary = {"model_name": "MLP" if dataset == "KMNIST" else "ResNet50", "final_test_accuracy": accuracy}
    if in_summary:
        summary["dataset"] = dataset
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if train is not None:
        (run_dir / "config.json").write_text(json.dumps({"data": {"name": dataset}, "train": train}))


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path, "mlp_a", "KMNIST", 0.91, {"lr": 0.05, "batch_size": 128, "lr_scaling": None})
    write_run(tmp_path, "mlp_b", "KMNIST", 0.95, {"lr": 0.001, "batch_size": 64, "lr_scaling": None})
    write_run(tmp_path, "resnet_tricks", "OxfordIIITPet", 0.30,
              {"lr": 0.1, "batch_size": 64, "lr_scaling": {"base_lr": 0.1, "base_batch_size": 256}})
    write_run(tmp_path, "vgg_old", "OxfordIIITPet", 0.20, {"lr": 0.01, "batch_size": 32, "lr_scaling": None},
              in_summary=False)  # an older summary without "dataset": taken from config.json
    return tmp_path


def test_runs_are_ranked_within_their_dataset_with_lr_and_batch(runs):
    text = comparison(collect_summaries(runs))
    kmnist, pets = text.split("## OxfordIIITPet")
    assert kmnist.startswith("## KMNIST (2 runs)") and pets.startswith(" (2 runs)")
    kmnist_rows = [line for line in kmnist.splitlines() if line.startswith("| mlp")]
    pets_rows = [line for line in pets.splitlines() if line.startswith(("| resnet", "| vgg"))]
    assert [row.split(" | ")[0] for row in kmnist_rows] == ["| mlp_b", "| mlp_a"]
    assert [row.split(" | ")[0] for row in pets_rows] == ["| resnet_tricks", "| vgg_old"]
    header = text.splitlines()[2]
    assert "| lr | batch |" in header
    assert "| 0.001 | 64 |" in kmnist_rows[0] and "| 0.025 | 64 |" in pets_rows[0]  # 0.1 * 64 / 256


def test_dataset_option_keeps_one_table_and_names_the_datasets_present(runs):
    rows = collect_summaries(runs)
    only = comparison(select_dataset(rows, "OxfordIIITPet"))
    assert "##" not in only and "mlp_" not in only and only.count("\n| ") == 2
    with pytest.raises(UserError, match=r"runs here are of: KMNIST, OxfordIIITPet. Did you mean: KMNIST"):
        select_dataset(rows, "kmnist")


def test_cli_filters_and_refuses_an_unknown_dataset(runs):
    def script(*args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "compare_runs.py"), "--exp-dir", str(runs),
                               *args], capture_output=True, text=True, timeout=120)
    result = script("--dataset", "KMNIST")
    assert result.returncode == 0 and "mlp_b" in result.stdout and "resnet" not in result.stdout
    wrong = script("--dataset", "CIFAR10")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and "KMNIST, OxfordIIITPet" in wrong.stderr


def test_a_run_without_config_or_dataset_is_grouped_apart(tmp_path):
    write_run(tmp_path, "bare", "KMNIST", 0.5, in_summary=False)
    rows = collect_summaries(tmp_path)
    assert rows[0]["dataset"] == "unknown dataset" and rows[0].get("lr") is None
    assert comparison(rows).splitlines()[2].startswith("| bare | MLP |")


def test_an_unreadable_summary_is_one_message(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="broken/summary.json cannot be read"):
        collect_summaries(tmp_path)
