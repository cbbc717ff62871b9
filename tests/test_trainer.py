"""Trainer: learning, one-batch overfitting, run files, checkpoints, exact resume, compile,
channels_last, and stopping on a non-finite loss."""
import csv
import json
import math
import re

import pytest
import torch
from torch.utils.data import DataLoader

from executors.checkpoints.checkpoint import load_checkpoint
from executors.evaluation import batch_to_device
from executors.run_folders.run_files import metrics_csv
from executors.trainer import Trainer
from tests.synthetic_data import prototype_loaders
from tests.trainer_runs import assert_same_run, make_trainer, straight_and_resumed
from utils.config import load_config
from utils.errors import CheckpointError, TrainingError

SUMMARY_KEYS = {"exp_name", "model_name", "dataset", "epochs_completed", "best_epoch", "best_test_accuracy",
                "final_test_accuracy", "final_test_balanced_accuracy", "final_test_loss",
                "trainable_parameters", "train_images_per_second", "wall_time_seconds", "device"}
VAL_SUMMARY_KEYS = {"selected_on", "best_val_accuracy", "final_val_accuracy", "final_val_balanced_accuracy",
                    "final_val_loss"}
METRIC_COLUMNS_BEFORE_VAL = ["epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                             "test_balanced_accuracy", "epoch_seconds", "train_images_per_second", "skipped_steps"]


def mlp_cfg(tmp_path, *overrides):
    return load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                               "train.epochs=3", "train.batch_size=32", *overrides])


def test_short_run_learns_and_writes_the_run_directory(tmp_path):
    cfg = mlp_cfg(tmp_path)
    trainer = make_trainer(cfg)
    assert trainer.evaluate()["accuracy"] < 0.3  # chance is 0.1
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = trainer.fit(run_dir)
    assert summary["final_test_accuracy"] > 0.9
    assert set(summary) == SUMMARY_KEYS | VAL_SUMMARY_KEYS
    assert summary["selected_on"] == "test" and summary["best_val_accuracy"] is None
    assert summary["trainable_parameters"] == 159_010 and summary["epochs_completed"] == 3
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert json.loads((run_dir / "config.json").read_text())["train"]["epochs"] == 3
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(summary["final_test_accuracy"], abs=1e-6)
    assert max(float(r["test_accuracy"]) for r in rows) == pytest.approx(summary["best_test_accuracy"], abs=1e-6)
    steps = list(csv.DictReader((run_dir / "steps.csv").open()))
    per_epoch = len(trainer.train_loader)
    assert [int(r["step"]) for r in steps] == list(range(1, 3 * per_epoch + 1))
    assert [int(r["epoch"]) for r in steps] == [e for e in (1, 2, 3) for _ in range(per_epoch)]
    sizes = [len(batch["label"]) for batch in trainer.train_loader]
    epoch_loss = sum(float(r["loss"]) * size for r, size in zip(steps, sizes)) / sum(sizes)
    assert epoch_loss == pytest.approx(float(rows[0]["train_loss"]), rel=1e-4)
    assert float(steps[0]["lr"]) == pytest.approx(float(rows[0]["lr"]), rel=1e-5)
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
        loss, logits, skipped = trainer._forward_backward(batch["image"], batch["label"])
        losses[amp] = loss.item()
        assert logits.dtype == (torch.bfloat16 if amp == "bf16" else torch.float32) and skipped is None
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert losses["bf16"] == pytest.approx(losses["off"], rel=2e-2) and losses["bf16"] != losses["off"]


@pytest.mark.parametrize("overrides", [(), ("train.mixup_alpha=0.4", "train.cutmix_alpha=1.0")])
def test_overfitting_on_batch_reaches_100_percent(tmp_path, overrides):
    """Also with mixing on: the batch is memorised as it is, unmixed."""
    result = make_trainer(mlp_cfg(tmp_path, *overrides)).overfitting_on_batch(200)
    assert result["accuracy"] == 1.0 and result["steps"] <= 200


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    straight, parts = straight_and_resumed(mlp_cfg, tmp_path, "train.warmup_epochs=1.0")
    assert_same_run(straight, parts)
    assert (tmp_path / "parts" / "steps.csv").read_text() == (tmp_path / "full" / "steps.csv").read_text()


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
    with pytest.raises(CheckpointError, match=r"Cannot resume .* with this config: .*model\.layers"):
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


def test_metrics_csv_columns_grow_at_the_end_only_and_older_histories_are_read(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path, "train.epochs=1"))
    (tmp_path / "run").mkdir()
    trainer.fit(tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert list(rows[0]) == METRIC_COLUMNS_BEFORE_VAL + ["val_loss", "val_accuracy", "val_balanced_accuracy"]
    assert rows[0]["skipped_steps"] == "0" and rows[0]["val_accuracy"] == ""  # no validation split
    older = {key: value for key, value in trainer.history[0].items()
             if key in METRIC_COLUMNS_BEFORE_VAL[:-1]}  # a run resumed from an older checkpoint
    assert metrics_csv([older]).splitlines()[1].endswith(",,,,")


class EpochLoader:
    """A loader without a dataset (no augmentation preview) that records set_epoch calls."""

    def __init__(self, batches):
        self.batches, self.epochs = batches, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def test_loader_hooks_set_epoch_and_no_preview(tmp_path):
    train_loader, test_loader, classes = prototype_loaders(batch_size=32)
    loader = EpochLoader(list(train_loader)[:4])
    trainer = Trainer(mlp_cfg(tmp_path, "train.epochs=2"), loader, test_loader, classes)
    (tmp_path / "run").mkdir()
    trainer.fit(tmp_path / "run")
    assert loader.epochs == [0, 1]
    assert not (tmp_path / "run" / "batch_augmentation.png").exists()
    assert (tmp_path / "run" / "last.pt").is_file()


def test_compiled_model_trains_and_saves_plain_keys(tmp_path, monkeypatch):
    """torch.compile wraps the model (here with the quick aot_eager backend); checkpoints keep
    the keys of the uncompiled model, without `_orig_mod.`."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compile_(model, backend="aot_eager"))
    compiled = make_trainer(mlp_cfg(tmp_path, "train.compile=True", "train.epochs=1"))
    assert compiled.forward.compiled is not None
    (tmp_path / "run").mkdir()
    compiled.fit(tmp_path / "run")
    assert compiled.forward.proven and compiled.forward.compiled is not None
    plain = make_trainer(mlp_cfg(tmp_path))
    plain.save_model(tmp_path / "plain.pt")
    saved = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert list(saved) == list(load_checkpoint(tmp_path / "plain.pt")["model"])
    assert load_checkpoint(tmp_path / "run" / "last.pt")["history"][0]["test_accuracy"] > 0.5


@pytest.mark.parametrize("where", ["compile", "first step"])
def test_failed_compile_falls_back_to_eager_with_a_note(tmp_path, monkeypatch, capsys, where):
    def broken_compile(model):
        if where == "compile":
            raise RuntimeError("Dynamo is not supported here")

        def first_call(images):
            raise RuntimeError("inductor: no working C++ compiler\nlong details")
        return first_call
    monkeypatch.setattr(torch, "compile", broken_compile)
    trainer = make_trainer(mlp_cfg(tmp_path, "train.compile=True"))
    step = trainer.make_step(next(iter(trainer.train_loader)))
    assert trainer.forward.compiled is None and trainer.global_step == 1 and math.isfinite(step["loss"])
    err = capsys.readouterr().err
    assert err.count("note: torch.compile failed") == 1 and "eager" in err and "long details" not in err
    assert trainer.train_epoch(0)["accuracy"] > 0.5


def nan_loss_after(trainer, step):
    """Make the training loss NaN from global step `step` on."""
    criterion = trainer.criterion
    trainer.criterion = lambda logits, labels: criterion(logits, labels) * (
        float("nan") if trainer.global_step + 1 >= step else 1.0)


def test_a_loss_that_stays_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    statuses = []
    monkeypatch.setattr("logs.Logger.NullBackend.close", lambda self, status: statuses.append(status))
    trainer = make_trainer(mlp_cfg(tmp_path, "train.max_nonfinite_steps=3", "logger.flush_every=2"))
    nan_loss_after(trainer, 14)  # epoch 1 is steps 1-13 (400 images, batch 32)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    original_end_epoch, last = trainer._end_epoch, {}

    def end_epoch(*args):
        original_end_epoch(*args)
        last["bytes"] = (run_dir / "last.pt").read_bytes()
    monkeypatch.setattr(trainer, "_end_epoch", end_epoch)
    with pytest.raises(TrainingError, match=r"non-finite \(NaN or inf\) at step 14 .*lower train.lr") as error:
        trainer.fit(run_dir)
    assert "last good epoch (1)" in str(error.value) and "stayed so for 4 steps" in str(error.value)
    assert trainer.global_step == 17  # epoch 2 reads back after steps 15 and 17
    assert (run_dir / "last.pt").read_bytes() == last["bytes"]
    assert load_checkpoint(run_dir / "best.pt")["epochs_completed"] == 1
    assert statuses == ["FAILED"] and not (run_dir / "summary.json").exists()


def test_nan_weights_at_the_end_of_an_epoch_are_never_saved(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path, "train.max_nonfinite_steps=50"))
    nan_loss_after(trainer, 12)
    (tmp_path / "run").mkdir()
    with pytest.raises(TrainingError, match="at step 12 and the weights became non-finite too"):
        trainer.fit(tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cnn_in_channels_last_trains(tmp_path, monkeypatch):
    """The CUDA layout (channels_last model and batches) on the CPU, where it also runs."""
    monkeypatch.setattr("executors.trainer.uses_channels_last", lambda model_name, device: True)
    cfg = load_config("resnet50", ["device='cpu'", "logger.backend='none'", "train.batch_size=4"])
    images = torch.randn(8, 3, 32, 32)
    loader = DataLoader([{"image": image, "label": i % 4} for i, image in enumerate(images)], batch_size=4)
    trainer = Trainer(cfg, loader, loader, [f"c{i}" for i in range(4)])
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images, _ = batch_to_device(next(iter(loader)), trainer.device, trainer.channels_last)
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    assert math.isfinite(trainer.make_step(next(iter(loader)))["loss"])
    assert trainer.evaluate()["confusion"].sum() == 8


def test_predict_uses_the_checkpoint_precision(tmp_path):
    """predict_files autocasts like training: a bf16 checkpoint predicts in bf16 (here on the CPU)."""
    from PIL import Image

    from executors.checkpoints.inference import predict_files
    image = tmp_path / "glyph.png"
    Image.fromarray((torch.rand(28, 28) * 255).byte().numpy()).save(image)
    trainer = make_trainer(mlp_cfg(tmp_path, "data.mean=[0.2]", "data.std=[0.3]"))
    probabilities = {}
    for amp in ("off", "bf16"):
        trainer.cfg.train.amp = amp
        trainer.save_model(tmp_path / f"{amp}.pt")
        (top, _, error), = predict_files(tmp_path / f"{amp}.pt", [image], top_k=10)
        assert error is None
        probabilities[amp] = [p for _, p in top]
    assert probabilities["bf16"] == pytest.approx(probabilities["off"], rel=5e-2, abs=1e-3)
    assert probabilities["bf16"] != probabilities["off"]


@pytest.mark.parametrize("overrides, lr", [
    (["train.warmup_epochs=2.0", "train.scheduler='cosine'"], 0.05),
    (["train.warmup_epochs=5.0", "train.lr_scaling={'base_lr': 0.1, 'base_batch_size': 256}"], 0.1 * 32 / 256),
])
def test_overfitting_on_batch_uses_the_configured_lr_constant(tmp_path, overrides, lr):
    """Neither the warmup's first-step lr (lr / W, set when LambdaLR is built) nor a schedule."""
    trainer = make_trainer(mlp_cfg(tmp_path, *overrides))
    used, step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        used.append([group["lr"] for group in trainer.optimizer.param_groups])
        return step(*args, **kwargs)
    trainer.optimizer.step = recording_step
    result = trainer.overfitting_on_batch(30)
    assert used and all(lrs == pytest.approx([lr] * len(lrs)) for lrs in used)
    assert result["steps"] == len(used)


@pytest.mark.parametrize("failing_save", [1, 2, 3, 4])
def test_a_crash_between_checkpoint_writes_never_loses_the_best_checkpoint(tmp_path, monkeypatch, failing_save):
    """Whatever checkpoint write fails (a crash, a full disk), the last.pt left behind names a
    best epoch whose best.pt exists: best.pt is written before last.pt records it."""
    import executors.trainer
    save, calls = executors.trainer.save_checkpoint, []

    def crashing_save(state, path):
        calls.append(path)
        if len(calls) == failing_save:
            raise OSError(28, "No space left on device")
        save(state, path)
    monkeypatch.setattr(executors.trainer, "save_checkpoint", crashing_save)
    trainer = make_trainer(mlp_cfg(tmp_path))
    (tmp_path / "run").mkdir()
    with pytest.raises(Exception):
        trainer.fit(tmp_path / "run")
    if (tmp_path / "run" / "last.pt").exists():
        last = load_checkpoint(tmp_path / "run" / "last.pt")
        assert load_checkpoint(tmp_path / "run" / "best.pt")["epochs_completed"] == last["best_epoch"]


def unreadable_checkpoints(folder, trainer):
    """{kind: path} of files that are not readable checkpoints of this library."""
    trainer.save_model(folder / "good.pt")
    good = (folder / "good.pt").read_bytes()
    files = {"empty": b"", "text": b"model weights\n", "random": bytes(range(256)) * 40,
             "truncated": good[: len(good) // 2], "cut short": good[:-40],
             "foreign pickle": None, "list": None, "lacking keys": None}
    paths = {}
    for kind, content in files.items():
        paths[kind] = folder / f"{kind.replace(' ', '_')}.pt"
        if content is not None:
            paths[kind].write_bytes(content)
    torch.save({"format_version": 1, "model": torch.nn.Linear(2, 2)}, paths["foreign pickle"])
    torch.save([1, 2], paths["list"])
    torch.save({"format_version": 1, "model_name": "MLP"}, paths["lacking keys"])
    state = torch.load(folder / "good.pt", weights_only=True)
    paths["config not a dict"] = folder / "config_not_a_dict.pt"
    torch.save({**state, "config": "mlp"}, paths["config not a dict"])
    paths["directory"] = folder / "run_dir.pt"
    paths["directory"].mkdir()
    return paths


def test_every_unreadable_checkpoint_is_one_checkpoint_error(tmp_path):
    trainer = make_trainer(mlp_cfg(tmp_path))
    for kind, path in unreadable_checkpoints(tmp_path, trainer).items():
        with pytest.raises(CheckpointError) as error:
            trainer.load_model(path)
        message = str(error.value)
        assert str(path) in message and "\n" not in message and "weights_only" not in message, (kind, message)


def test_secrets_never_reach_config_json_or_the_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "nep-env-token-42")
    cfg = mlp_cfg(tmp_path, "train.epochs=1", "logger.tracking_uri='https://ann:hunter2@mlflow.example.com/'")
    cfg.logger.neptune_api_token = "tok-123456"
    cfg.data.db_password, cfg.data.mirror_secret = "pw-7", None
    cfg.data.mirrors = ["https://bob:s3cr3t@mirror.example.com/kmnist/", "note nep-env-token-42"]
    trainer = make_trainer(cfg)
    (tmp_path / "run").mkdir()
    trainer.fit(tmp_path / "run")
    saved = [(tmp_path / "run" / "config.json").read_text()]
    saved += [json.dumps(load_checkpoint(tmp_path / "run" / name)["config"]) for name in ("last.pt", "best.pt")]
    for text in saved:
        assert not any(secret in text for secret in ("tok-123456", "pw-7", "hunter2", "s3cr3t", "nep-env-token-42"))
        config = json.loads(text)
        assert config["logger"]["neptune_api_token"] == "<hidden>" and config["data"]["mirror_secret"] is None
        assert config["logger"]["tracking_uri"] == "https://ann:<hidden>@mlflow.example.com/"
    assert cfg.logger.neptune_api_token == "tok-123456"  # the running config keeps them


def test_progress_off_a_terminal_is_at_most_three_plain_lines_per_epoch(tmp_path, capsys, monkeypatch):
    import executors.run_folders.progress
    from executors.run_folders.progress import EpochProgress
    batches = list(range(13))
    progress = EpochProgress(batches, 0, 2, interactive=False)
    assert list(progress) == batches and capsys.readouterr().out == ""  # a quick epoch prints nothing
    monkeypatch.setattr(executors.run_folders.progress, "PLAIN_AFTER_SECONDS", 0.0)
    progress = EpochProgress(batches, 1, 2, interactive=False)
    for step, _ in enumerate(progress):
        progress.show(loss=f"{1 / (step + 1):.4f}")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" steps")[0] for line in lines] == ["  epoch 2/2: 4/13", "  epoch 2/2: 7/13",
                                                            "  epoch 2/2: 10/13"]
    assert lines[0].endswith("loss 0.2500")  # the values of the 4th step


def test_resume_refuses_another_recipe_and_keeps_this_devices_optimizer_settings(tmp_path):
    """load_model refuses a changed optimisation recipe (executors/checkpoints/resume.py); a checkpoint
    written on CUDA (fused optimizer kernels) still resumes, and steps, on the CPU."""
    trainer = make_trainer(mlp_cfg(tmp_path))
    trainer.make_step(next(iter(trainer.train_loader)))
    trainer.save_model(tmp_path / "last.pt")
    for overrides, expected in ((["train.optimizer='Adam'", "train.optimizer_args={}"],
                                 "train.optimizer: 'SGD' -> 'Adam'"),
                                (["train.weight_decay=0.01"], "train.weight_decay: 0.0001 -> 0.01")):
        with pytest.raises(CheckpointError, match=re.escape(expected)):
            make_trainer(mlp_cfg(tmp_path, *overrides)).load_model(tmp_path / "last.pt")
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = True  # as an optimizer built on CUDA saves it
    torch.save(state, tmp_path / "cuda.pt")
    resumed = make_trainer(mlp_cfg(tmp_path))
    resumed.load_model(tmp_path / "cuda.pt")
    assert not resumed.optimizer.param_groups[0]["fused"]
    assert resumed.optimizer.state_dict()["state"]  # the momentum buffers were restored
    assert resumed.make_step(next(iter(resumed.train_loader)))["step"] == 2
