"""Test-time augmentation (executors/tta.py): the views, their mean logits against explicit
views computed by hand, evaluation of plain and TTA metrics in one pass, and the config checks."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from executors.evaluation import evaluate_model
from executors.tta import TTA_MODES, resolve_tta, tta_logits, tta_views
from utils.config import load_config
from utils.errors import ConfigError
from utils.metrics import accuracy, balanced_accuracy, confusion_matrix
from utils.validation import RULES


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
