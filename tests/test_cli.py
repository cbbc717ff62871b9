"""The command-line scripts end to end, as a user runs them, on synthetic KMNIST files."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from datasets.synthetic import write_kmnist_idx
from utils.cli import run
from utils.errors import DataError, TrainingError

REPO = Path(__file__).resolve().parents[1]


def run_script(name, *args, cwd=None):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def kmnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(root, train_per_class=30, test_per_class=10)
    return root


def common_args(kmnist_root, exp_dir):
    return ["--set", f"data.root='{kmnist_root}'", "data.md5=None", "data.download=False", "device='cpu'",
            f"exp_dir='{exp_dir}'", "train.epochs=2", "train.batch_size=32"]


def test_unknown_key_exits_2_with_one_message(tmp_path):
    result = run_script("train.py", "--cfg", "mlp", "--set", "train.lrr=0.1", f"exp_dir='{tmp_path}'")
    assert result.returncode == 2
    assert "Unknown config key 'train.lrr'" in result.stderr and "train.lr" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_missing_data_exits_2_and_leaves_no_run_directory(tmp_path):
    result = run_script("train.py", "--cfg", "mlp", "--set", f"data.root='{tmp_path / 'nowhere'}'",
                        "data.download=False", f"exp_dir='{tmp_path / 'runs'}'")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train-images-idx3-ubyte.gz" in result.stderr
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_train_resume_evaluate_predict(kmnist_root, tmp_path):
    args = common_args(kmnist_root, tmp_path)
    first = run_script("train.py", "--cfg", "mlp", *args, "logger.backend='mlflow'", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "mlp_base"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["trainable_parameters"] == 159_010
    assert (tmp_path / "mlflow.db").is_file() and not (tmp_path / "mlruns").exists()
    assert (run_dir / "batch_augmentation.png").read_bytes()[:4] == b"\x89PNG"

    again = run_script("train.py", "--cfg", "mlp", *args, "logger.backend='none'")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "mlp_base_1" / "summary.json").is_file()  # a second run never overwrites the first

    longer = run_script("train.py", "--cfg", "mlp", "--resume", str(run_dir / "last.pt"), *args,
                        "train.epochs=3", "logger.backend='none'")
    assert longer.returncode == 0, longer.stderr
    assert json.loads((run_dir / "summary.json").read_text())["epochs_completed"] == 3

    evaluated = run_script("evaluate.py", "--checkpoint", str(run_dir / "best.pt"), "--set",
                           f"data.root='{kmnist_root}'", "data.md5=None", "device='cpu'")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert Path(metrics["confusion_matrix_image"]).is_file()

    image = tmp_path / "digit.png"
    Image.new("L", (64, 64), 255).save(image)
    predicted = run_script("predict.py", "--checkpoint", str(run_dir / "best.pt"), "--top-k", "2", str(image))
    assert predicted.returncode == 0, predicted.stderr
    line = predicted.stdout.strip().splitlines()[-1]
    assert line.startswith(str(image)) and line.count(",") == 1

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    failed = run_script("predict.py", "--checkpoint", str(run_dir / "best.pt"), str(broken))
    assert failed.returncode == 2 and str(broken) in failed.stderr and "Traceback" not in failed.stderr


def test_resume_with_a_checkpoint_of_another_model_exits_2(kmnist_root, tmp_path):
    args = common_args(kmnist_root, tmp_path)
    assert run_script("train.py", "--cfg", "mlp", *args, "train.epochs=1", "logger.backend='none'").returncode == 0
    result = run_script("train.py", "--cfg", "mlp_deep", "--resume", str(tmp_path / "mlp_base" / "last.pt"),
                        *args, "logger.backend='none'")
    assert result.returncode == 2 and "model.layers" in result.stderr and "Cannot resume" in result.stderr


def test_overfit_batch_and_dataset_stats(kmnist_root, tmp_path):
    overfit = run_script("overfit_batch.py", "--cfg", "mlp", "--steps", "300", *common_args(kmnist_root, tmp_path))
    assert overfit.returncode == 0, overfit.stdout + overfit.stderr
    assert "accuracy on the batch 1.0000" in overfit.stdout
    stats = run_script("dataset_stats.py", "--cfg", "mlp", "--set", f"data.root='{kmnist_root}'", "data.md5=None")
    assert stats.returncode == 0, stats.stderr
    assert "300" in stats.stdout and "100" in stats.stdout  # train and test sizes


def test_compare_runs_table(tmp_path):
    for name, accuracy in (("a", 0.8), ("b", 0.9)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"model_name": "MLP", "trainable_parameters": 159010, "final_test_accuracy": accuracy,
             "final_test_loss": 1.17035, "train_images_per_second": 16544.8}))
    result = run_script("compare_runs.py", "--exp-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = result.stdout.strip().splitlines()
    assert rows[2].startswith("| b | MLP | 159,010 |") and rows[3].startswith("| a |")
    assert "| 0.9000 |" in rows[2] and "| 1.1704 | 16,545 |" in rows[2]  # a loss above 1 keeps its decimals
    empty = run_script("compare_runs.py", "--exp-dir", str(tmp_path / "a"))
    assert empty.returncode == 2 and "No finished runs" in empty.stderr


def test_a_diverging_run_exits_1_with_one_message(kmnist_root, tmp_path):
    """train.lr=1e30 overflows the weights after one step: the loss stays non-finite and the
    run stops with exit status 1, one message and no traceback."""
    result = run_script("train.py", "--cfg", "mlp", *common_args(kmnist_root, tmp_path), "logger.backend='none'",
                        "train.lr=1e30", "train.max_nonfinite_steps=2", "logger.flush_every=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: the training loss became non-finite (NaN or inf) at step 2" in result.stderr
    assert "lower train.lr" in result.stderr and not (tmp_path / "mlp_base" / "last.pt").exists()


def test_training_error_is_status_1_without_traceback(capsys):
    def diverging():
        raise TrainingError("the loss became NaN at step 7")
    with pytest.raises(SystemExit) as exit_:
        run(diverging)
    assert exit_.value.code == 1 and capsys.readouterr().err == "error: the loss became NaN at step 7\n"


@pytest.mark.parametrize("command", ["predict", "evaluate", "resume"])
def test_an_empty_checkpoint_exits_2_with_one_paragraph(kmnist_root, tmp_path, command):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"")
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 255).save(image)
    result = {"predict": lambda: run_script("predict.py", "--checkpoint", str(checkpoint), str(image)),
              "evaluate": lambda: run_script("evaluate.py", "--checkpoint", str(checkpoint)),
              "resume": lambda: run_script("train.py", "--cfg", "mlp", "--resume", str(checkpoint),
                                           *common_args(kmnist_root, tmp_path), "logger.backend='none'")}[command]()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: Checkpoint {checkpoint} cannot be read: the file is empty "
                                                  f"(0 bytes; a write that never finished, or a full disk). "
                                                  f"Pass another best.pt/last.pt, or train again."]


@pytest.mark.parametrize("script, overrides, expected", [
    ("train.py", ["train.epochs=0", "data.num_workers=-1"], "train.epochs=0 must be a whole number >= 1"),
    ("overfit_batch.py", ["train.lr=1e999"], "train.lr=inf must be a finite number > 0"),
    ("train.py", ["logger.backend='neptune'", "logger.neptune_mode='async'"], "logger."),
])
def test_invalid_values_exit_2_before_any_data_is_read_or_directory_made(tmp_path, script, overrides, expected):
    result = run_script(script, "--cfg", "mlp", "--set", f"data.root='{tmp_path / 'no_data'}'", "data.download=False",
                        f"exp_dir='{tmp_path / 'runs'}'", *overrides)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected in result.stderr and "train-images" not in result.stderr  # the data was never looked at
    assert not (tmp_path / "runs").exists()


def start_training(kmnist_root, exp_dir, *overrides):
    """train.py in a child process whose stdout arrives line by line."""
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), "--cfg", "mlp",
                             *common_args(kmnist_root, exp_dir), *overrides], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_line(process, start):
    for line in process.stdout:
        if line.startswith(start):
            return line
    raise AssertionError(f"no line starting with {start!r}; stderr: {process.stderr.read()}")


def test_sigterm_stops_like_ctrl_c_and_the_tracker_run_is_killed(kmnist_root, tmp_path):
    from mlflow import MlflowClient
    process = start_training(kmnist_root, tmp_path, "train.epochs=100000", "logger.backend='mlflow'")
    wait_for_line(process, "epoch 2/")  # epoch 1 is in last.pt
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and "Traceback" not in stderr, stderr
    last = tmp_path / "mlp_base" / "last.pt"
    assert f"interrupted by SIGTERM: {last} holds " in stderr and "completed epoch" in stderr
    assert "continue with --resume auto" in stderr
    runs = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()])
    assert [run.info.status for run in runs] == ["KILLED"]


def test_ctrl_c_before_the_first_checkpoint_does_not_advise_resuming(kmnist_root, tmp_path):
    process = start_training(kmnist_root, tmp_path, "train.batch_size=1", "logger.backend='none'")
    wait_for_line(process, "Run directory:")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "mlp_base" / "last.pt").exists()
    assert "interrupted by SIGINT: no checkpoint was written yet" in stderr
    assert "--resume" not in stderr


def test_output_to_a_file_has_no_progress_bar_frames_and_one_line_per_epoch(kmnist_root, tmp_path):
    result = run_script("train.py", "--cfg", "mlp", *common_args(kmnist_root, tmp_path), "logger.backend='none'",
                        "train.epochs=3")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr and "it/s" not in result.stderr
    lines = result.stdout.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(re.search(r"\| [\d.]+s, ETA [\d.]+s$", line) for line in epochs), epochs
    assert epochs[-1].endswith("ETA 0.0s")
    for start in ("Device: cpu, precision fp32", "Data loader: ", "Threads: ", "MLP: 159,010 trainable parameters"):
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)


@pytest.mark.parametrize("script", ["train.py", "overfit_batch.py"])
def test_help_lists_the_configs_and_describes_every_option(script):
    from utils.config import available_configs
    result = run_script(script, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert all(name in text for name in available_configs()) and "exit status: 0 success" in text
    options = re.findall(r"^  (-[-\w]+(?:, --[\w-]+)?)([^\n]*)\n", result.stdout, flags=re.MULTILINE)
    assert len(options) >= 3
    for option, rest in options:  # help beside the option, or on the next line
        described = rest.strip() or re.search(re.escape(option) + r"[^\n]*\n {10,}\S", result.stdout)
        assert described, option


class FailingDataset:
    """Items raise what a dataset raises on a bad file."""

    def __init__(self, error):
        self.error = error

    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise self.error


@pytest.mark.parametrize("error, expected", [
    (DataError("/data/pets/images/Abyssinian_1.jpg cannot be decoded (truncated): delete it and download again."),
     "error: /data/pets/images/Abyssinian_1.jpg cannot be decoded (truncated): delete it and download again.\n"),
    (FileNotFoundError(2, "No such file or directory", "/data/pets/images/x.jpg"),
     "error: cannot use /data/pets/images/x.jpg: no such file or directory (ENOENT).\n"),
    (PermissionError(13, "Permission denied", "/data/pets/images/y.jpg"),
     "error: cannot use /data/pets/images/y.jpg: permission denied (EACCES).\n"),
    (TrainingError("the loss became NaN at step 3"), "error: the loss became NaN at step 3\n"),
])
def test_an_error_in_a_dataloader_worker_shows_the_workers_message(capsys, error, expected):
    import torch.utils.data

    def read_everything():
        list(torch.utils.data.DataLoader(FailingDataset(error), num_workers=1))
    with pytest.raises(SystemExit) as exit_:
        run(read_everything)
    assert capsys.readouterr().err == expected
    assert exit_.value.code == (1 if isinstance(error, TrainingError) else 2)
