"""Test-time augmentation (executors/tools/tta.py): the views, their mean logits against explicit
views computed by hand, evaluation of plain and TTA metrics in one pass, the config checks,
and the TTA metrics of a training run beside its plain ones."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from executors.checkpoints.checkpoint import load_checkpoint
from executors.evaluation import evaluate_model
from executors.launch import train_experiment
from executors.run_folders.run_files import METRIC_COLUMNS, TTA_COLUMNS, tracker_metrics
from executors.tools.tta import TTA_MODES, resolve_tta, tta_logits, tta_views
from executors.trainer import Trainer
from tests.synthetic_data import PrototypeDataset, prototype_loaders
from utils.config import load_config
from utils.errors import ConfigError
from utils.metrics import accuracy, balanced_accuracy, confusion_matrix
from utils.validation import RULES

REPO = Path(__file__).resolve().parents[1]


def small_cnn():
    """A conv net whose output changes under flips and crops (no global symmetry)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(6)).eval()


def images(count=5, height=16, width=24, seed=0):
    return torch.randn(count, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_the_views_are_the_image_its_mirror_and_four_resized_corner_crops():
    x = images()
    assert [len(tta_views(x, mode)) for mode in TTA_MODES] == [1, 2, 6]
    views = tta_views(x, "flip_crops")
    assert views[0] is x and torch.equal(views[1], torch.flip(x, dims=[3]))
    # 87.5% of 16 x 24 is 14 x 21: corners at rows 0 / 2 and columns 0 / 3
    for view, (top, left) in zip(views[2:], [(0, 0), (0, 3), (2, 0), (2, 3)]):
        expected = TF.resized_crop(x, top, left, 14, 21, [16, 24], antialias=False)
        assert view.shape == x.shape
        torch.testing.assert_close(view, expected)


def test_tta_logits_are_the_mean_of_the_logits_of_the_explicit_views():
    model, x = small_cnn(), images()
    with torch.no_grad():
        plain, mirrored = model(x), model(torch.flip(x, dims=[3]))
        corners = [model(F.interpolate(x[:, :, top:top + 14, left:left + 21], size=(16, 24), mode="bilinear"))
                   for top, left in [(0, 0), (0, 3), (2, 0), (2, 3)]]
        assert torch.equal(tta_logits(model, x, "none"), plain)
        torch.testing.assert_close(tta_logits(model, x, "flip"), (plain + mirrored) / 2)
        torch.testing.assert_close(tta_logits(model, x, "flip_crops"), (plain + mirrored + sum(corners)) / 6)
        assert torch.equal(tta_logits(model, x, "flip", plain_logits=plain), tta_logits(model, x, "flip"))


@pytest.mark.parametrize("mode", ["flip", "flip_crops"])
def test_one_evaluation_pass_gives_the_plain_metrics_unchanged_and_the_tta_metrics(mode):
    model = small_cnn()
    loader = [{"image": images(5, seed=s), "label": torch.tensor([s % 6, 1, 2, 3, 4])} for s in range(3)]
    device = torch.device("cpu")
    plain = evaluate_model(model, loader, device, 6)
    both = evaluate_model(model, loader, device, 6, tta=mode)
    for key in ("loss", "accuracy", "balanced_accuracy"):
        assert both[key] == plain[key]
    assert torch.equal(both["confusion"], plain["confusion"])
    with torch.no_grad():
        logits = torch.cat([tta_logits(model, batch["image"], mode) for batch in loader])
    labels = torch.cat([batch["label"] for batch in loader])
    predictions = logits.argmax(dim=1)
    assert both["tta_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert both["tta_accuracy"] == accuracy(labels, predictions)
    assert both["tta_balanced_accuracy"] == balanced_accuracy(labels, predictions)
    assert torch.equal(both["tta_confusion"], confusion_matrix(labels, predictions, 6))
    assert "tta_accuracy" not in plain


def test_the_mode_comes_from_the_option_else_the_config_else_none():
    pets = load_config("resnet50", ["eval.tta='flip'"])
    assert resolve_tta(pets) == "flip" and resolve_tta(pets, "flip_crops") == "flip_crops"
    del pets["eval"]  # a config saved before eval.tta existed
    assert resolve_tta(pets) == "none"
    assert RULES["eval.tta"].choices == TTA_MODES


def test_an_invalid_mode_is_a_config_error_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"eval.tta='mirror' must be one of none, flip, flip_crops"):
        load_config("resnet50", ["eval.tta='mirror'"])
    cfg = load_config("resnet50")
    cfg.eval.tta = "mirror"  # e.g. a checkpoint's config with --set, which load_config does not check
    with pytest.raises(ConfigError, match=r"eval.tta='mirror' must be one of none, flip, flip_crops"):
        resolve_tta(cfg)


@pytest.mark.parametrize("mode", ["flip", "flip_crops"])
def test_kmnist_refuses_flips(mode):
    with pytest.raises(ConfigError, match=rf"eval.tta='{mode}' mirrors the images, and KMNIST characters are not"):
        resolve_tta(load_config("mlp", [f"eval.tta='{mode}'"]))
    with pytest.raises(ConfigError, match=rf"--tta='{mode}' mirrors"):
        resolve_tta(load_config("mlp"), mode)
    assert resolve_tta(load_config("mlp")) == "none"


def flippable_cfg(tmp_path, mode):
    """The mlp config on the prototype images (tests/synthetic_data.py), which, unlike KMNIST
    characters, may be mirrored: data.name is set past the KMNIST refusal."""
    cfg = load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'", "train.epochs=2",
                              "train.batch_size=32", f"eval.tta='{mode}'"])
    cfg.data.name = "OxfordIIITPet"
    return cfg


def test_a_run_with_flip_tta_logs_its_metrics_beside_plain_ones_equal_to_a_run_without(tmp_path):
    """metrics.csv gains TTA_COLUMNS (only with TTA on); their values are evaluate_model's with
    tta="flip" on the weights of best.pt and last.pt; the plain columns, the best epoch (chosen
    on plain validation accuracy) and the weights equal those of the run with eval.tta=none."""
    runs = {}
    for mode in ("none", "flip"):
        train_loader, test_loader, classes = prototype_loaders(batch_size=32)
        val_loader = DataLoader(PrototypeDataset(10, split_seed=3), batch_size=64)
        trainer = Trainer(flippable_cfg(tmp_path, mode), train_loader, test_loader, classes, val_loader=val_loader)
        (tmp_path / mode).mkdir()
        summary = trainer.fit(tmp_path / mode)
        rows = list(csv.DictReader((tmp_path / mode / "metrics.csv").open()))
        runs[mode] = trainer, summary, rows, load_checkpoint(tmp_path / mode / "last.pt")
    (trainer, summary, rows, last), (_, plain_summary, plain_rows, plain_last) = runs["flip"], runs["none"]
    assert list(plain_rows[0]) == list(METRIC_COLUMNS) and list(rows[0]) == list(METRIC_COLUMNS + TTA_COLUMNS)
    timings = ("epoch_seconds", "train_images_per_second")
    assert [{k: v for k, v in row.items() if k in METRIC_COLUMNS and k not in timings} for row in rows] == \
        [{k: v for k, v in row.items() if k not in timings} for row in plain_rows]
    assert summary["best_epoch"] == plain_summary["best_epoch"] and summary["selected_on"] == "val"
    for name, tensor in plain_last["model"].items():
        assert torch.equal(last["model"][name], tensor)
    model = trainer.model
    for checkpoint, epoch in (("best.pt", summary["best_epoch"]), ("last.pt", 2)):
        model.load_state_dict(load_checkpoint(tmp_path / "flip" / checkpoint)["model"])
        row = last["history"][epoch - 1]
        for split, loader in (("test", trainer.test_loader), ("val", trainer.val_loader)):
            expected = evaluate_model(model, loader, torch.device("cpu"), 10, tta="flip")
            for key in ("loss", "accuracy", "balanced_accuracy"):
                assert row[f"tta_{split}_{key}"] == expected[f"tta_{key}"], (checkpoint, split, key)
                assert float(rows[epoch - 1][f"tta_{split}_{key}"]) == pytest.approx(expected[f"tta_{key}"], rel=1e-5)
    assert row["tta_test_loss"] != row["test_loss"]  # the mirror views change the prediction
    assert summary["final_tta_test_accuracy"] == row["tta_test_accuracy"]
    logged = tracker_metrics(row)
    assert logged["test/tta_accuracy"] == row["tta_test_accuracy"] and logged["val/tta_loss"] == row["tta_val_loss"]
    assert not any("tta" in name for name in tracker_metrics(plain_last["history"][-1]))


def test_a_kmnist_run_with_flips_is_refused_before_any_data_or_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("executors.launch.prepare_trainer", lambda *args, **kwargs: pytest.fail("data loaded"))
    cfg = load_config("mlp", ["eval.tta='flip'", f"exp_dir='{tmp_path}'", "logger.backend='none'"])
    with pytest.raises(ConfigError, match="eval.tta='flip' mirrors the images, and KMNIST characters"):
        train_experiment(cfg)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--cfg", "mlp", "--set",
                             "eval.tta='flip_crops'", f"exp_dir='{tmp_path}'"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "mirror-symmetric" in result.stderr
    assert list(tmp_path.iterdir()) == []
