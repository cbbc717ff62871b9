"""Prediction on any image file, evaluation refusing a task the checkpoint was not trained for,
and both with test-time augmentation."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.files import image_files
from datasets.kmnist import KMNIST
from datasets.loading.loaders import build_loaders
from datasets.oxford_pet import OxfordIIITPet
from datasets.synthetic import write_kmnist_idx, write_pets
from datasets.transforms.building import build_transforms
from executors.checkpoints.inference import evaluate_checkpoint, load_trained, predict_files
from executors.tools.tta import tta_views
from executors.trainer import Trainer
from utils.config import load_config
from utils.errors import CheckpointError, DataError

REPO = Path(__file__).resolve().parents[1]


def run_script(name, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def kmnist_checkpoint(tmp_path_factory):
    """(best.pt of an MLP trained 2 epochs on synthetic KMNIST, the data root)."""
    base = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(base / "data", train_per_class=20, test_per_class=5)
    cfg = load_config("mlp", [f"data.root='{base / 'data'}'", "data.md5=None", "data.download=False",
                              "device='cpu'", "logger.backend='none'", f"exp_dir='{base}'", "train.epochs=2",
                              "train.batch_size=32", "threads=1"])
    run_dir = base / "run"
    run_dir.mkdir()
    Trainer(cfg, *build_loaders(cfg)).fit(run_dir)
    return run_dir / "best.pt", base / "data"


def glyph(size=112):
    """uint8 [size, size]: a light stroke figure on a dark background, as KMNIST draws."""
    pixels = np.zeros((size, size), np.uint8)
    quarter = size // 4
    pixels[quarter:3 * quarter, size // 2 - size // 14: size // 2 + size // 14] = 230  # a vertical bar
    pixels[size // 2 - size // 14: size // 2 + size // 14, quarter:3 * quarter] = 200  # a horizontal bar
    pixels[quarter // 2: quarter, quarter: 3 * quarter] = 255
    return pixels


# ---------------------------------------------------------------- KMNIST glyphs drawn as people draw


def test_a_glyph_drawn_dark_on_light_is_inverted_and_said_so(tmp_path):
    Image.fromarray(glyph()).save(tmp_path / "light_on_dark.png")
    Image.fromarray(255 - glyph()).save(tmp_path / "dark_on_light.png")
    as_kmnist, notes = KMNIST.image_for_prediction(tmp_path / "light_on_dark.png")
    inverted, inverted_notes = KMNIST.image_for_prediction(tmp_path / "dark_on_light.png")
    assert notes == [] and as_kmnist.size == (28, 28) and as_kmnist.mode == "L"
    assert np.array_equal(np.asarray(inverted), np.asarray(as_kmnist))
    assert len(inverted_notes) == 1 and "inverted" in inverted_notes[0] and "border grey 255" in inverted_notes[0]


def test_a_non_square_glyph_keeps_its_proportions(tmp_path):
    wide = np.zeros((112, 224), np.uint8)
    wide[:, 56:168] = glyph()
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(glyph()).save(tmp_path / "square.png")
    image, _ = KMNIST.image_for_prediction(tmp_path / "wide.png")
    square, _ = KMNIST.image_for_prediction(tmp_path / "square.png")
    assert image.size == (28, 28)
    # the 112 px glyph fills the middle half of the padded 224 px square: 14 of 28 px
    assert np.abs(np.asarray(image)[7:21, 7:21].astype(int) - np.asarray(square.resize((14, 14)))).mean() < 20
    assert np.asarray(image)[:6].max() == 0 and np.asarray(image)[22:].max() == 0


def test_prediction_of_inverted_and_16_bit_glyphs_equals_the_kmnist_drawn_one(kmnist_checkpoint, tmp_path):
    checkpoint, _ = kmnist_checkpoint
    paths = {"kmnist": tmp_path / "a.png", "dark_on_light": tmp_path / "b.png", "16_bit": tmp_path / "c.png",
             "16_bit_dark_on_light": tmp_path / "d.png", "rgba": tmp_path / "e.png"}
    Image.fromarray(glyph()).save(paths["kmnist"])
    Image.fromarray(255 - glyph()).save(paths["dark_on_light"])
    Image.fromarray(glyph().astype(np.uint16) * 257).save(paths["16_bit"])
    Image.fromarray((255 - glyph()).astype(np.uint16) * 257).save(paths["16_bit_dark_on_light"])
    Image.fromarray(np.dstack([np.stack([255 - glyph()] * 3, -1), np.full((112, 112), 255, np.uint8)])).save(
        paths["rgba"])
    results = dict(zip(paths, predict_files(checkpoint, list(paths.values()), top_k=10)))
    expected = results["kmnist"][0]
    for name, (top, notes, error) in results.items():
        assert error is None, name
        assert [label for label, _ in top] == [label for label, _ in expected], name
        assert [p for _, p in top] == pytest.approx([p for _, p in expected], abs=1e-6), name
    assert results["16_bit"][1] == ["16-bit grey scaled to 8 bits"]
    assert any("inverted" in note for note in results["16_bit_dark_on_light"][1])


def test_predict_cli_prints_the_inversion_note(kmnist_checkpoint, tmp_path):
    checkpoint, _ = kmnist_checkpoint
    Image.fromarray(255 - glyph()).save(tmp_path / "drawn.png")
    result = run_script("predict.py", "--checkpoint", str(checkpoint), "--top-k", "2", str(tmp_path / "drawn.png"))
    assert result.returncode == 0, result.stderr
    assert f"note: {tmp_path / 'drawn.png'}: its background is light" in result.stderr
    assert result.stdout.strip().startswith(f"{tmp_path / 'drawn.png'}: ") and result.stdout.count(",") == 1


# ---------------------------------------------------------------- every PIL mode, both datasets


def grey_and_rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (32, 40), dtype=np.uint8), rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)


GREY_FILES = {  # file name -> (PIL image of the grey reference in another mode, note expected)
    "l.png": (lambda g: Image.fromarray(g), None),
    "i16.png": (lambda g: Image.fromarray(g.astype(np.uint16) * 257), "16-bit grey scaled to 8 bits"),
    "i32.tif": (lambda g: Image.fromarray(g.astype(np.int32) * 257, "I"), "16-bit grey scaled to 8 bits"),
    "i32_8bit.tif": (lambda g: Image.fromarray(g.astype(np.int32), "I"), None),
    "f_unit.tif": (lambda g: Image.fromarray(g.astype(np.float32) / 255, "F"), "float grey in [0, 1]"),
    "f_255.tif": (lambda g: Image.fromarray(g.astype(np.float32), "F"), None),
    "f_stretched.tif": (lambda g: Image.fromarray(g.astype(np.float32) * 4 - 100, "F"), "stretched to 8 bits"),
    "la_opaque.png": (lambda g: Image.fromarray(np.dstack([g, np.full_like(g, 255)]), "LA"), None),
}


@pytest.mark.parametrize("name", GREY_FILES)
def test_every_grey_mode_reads_as_the_same_8_bit_image(tmp_path, name):
    grey, _ = grey_and_rgb()
    make, note = GREY_FILES[name]
    make(grey).save(tmp_path / name)
    image, notes = image_files.read_image(tmp_path / name, for_prediction=True)
    expected = grey if name != "f_stretched.tif" else np.rint((grey * 4.0 - (grey.min() * 4.0)) * 255 /
                                                               (4.0 * (int(grey.max()) - int(grey.min()))))
    assert image.mode == "L" and np.abs(np.asarray(image, dtype=float) - expected).max() <= 0.5
    assert (note is None and notes == []) or (note is not None and note in notes[0])
    rgb, _ = OxfordIIITPet.image_for_prediction(tmp_path / name)
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb)[..., 0], np.asarray(image))


@pytest.mark.parametrize("name, mode, tolerance", [("rgb.png", "RGB", 0), ("rgba.png", "RGBA", 0),
                                                   ("cmyk.tif", "CMYK", 0), ("cmyk.jpg", "CMYK", 3),
                                                   ("ycbcr.tif", "YCbCr", 3),
                                                   ("lab.tif", "LAB", 32)])  # PIL's 8-bit LAB loses up to 30
def test_every_colour_mode_reads_as_the_rgb_image(tmp_path, name, mode, tolerance):
    _, rgb = grey_and_rgb()
    image = Image.fromarray(rgb)
    image = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])) if mode == "RGBA" else \
        image.convert(mode)
    image.save(tmp_path / name, **({"quality": 100} if name.endswith(".jpg") else {}))
    assert Image.open(tmp_path / name).mode == mode
    read, notes = OxfordIIITPet.image_for_prediction(tmp_path / name)
    assert read.mode == "RGB" and np.abs(np.asarray(read, dtype=int) - rgb).max() <= tolerance and notes == []


@pytest.mark.parametrize("content, background", [(40, 255), (220, 0)])
def test_transparency_is_filled_with_a_contrasting_background(tmp_path, content, background):
    """A palette image with a transparent index and an LA image with a transparent half."""
    half = np.zeros((32, 40), bool)
    half[:, 20:] = True
    palette = Image.fromarray(np.where(half, 0, 1).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, content, content, content] + [0] * 762)
    palette.save(tmp_path / "p.png", transparency=0)
    la = np.dstack([np.full((32, 40), content, np.uint8), np.where(half, 0, 255).astype(np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    for name in ("p.png", "la.png"):
        image, notes = OxfordIIITPet.image_for_prediction(tmp_path / name)
        pixels = np.asarray(image)
        assert (pixels[:, :20] == content).all() and (pixels[:, 20:] == background).all(), name
        assert notes == [f"transparent pixels filled with {'white' if background == 255 else 'black'}"]


def test_a_one_bit_image_reads_as_black_and_white(tmp_path):
    grey, _ = grey_and_rgb()
    Image.fromarray(grey > 128).save(tmp_path / "bits.png")
    image, _ = image_files.read_image(tmp_path / "bits.png")
    assert set(np.unique(np.asarray(image)).tolist()) == {0, 255}


def test_exif_orientation_turns_a_photo_upright(tmp_path):
    _, rgb = grey_and_rgb()
    exif = Image.Exif()
    exif[image_files.EXIF_ORIENTATION] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    image, notes = OxfordIIITPet.image_for_prediction(tmp_path / "phone.jpg")
    assert image.size == (32, 40) and notes == ["turned upright by its EXIF orientation"]


# ---------------------------------------------------------------- huge, truncated and non-image files


@pytest.fixture
def small_limits(monkeypatch):
    """PIL's and our pixel limits scaled down 1,000-fold, so a 2,400 x 1,800 image is 'huge'."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478)
    monkeypatch.setattr(image_files, "MAX_PIXELS", 2 * 89_478)
    monkeypatch.setattr(image_files, "DRAFT_ABOVE", 4_096 * 4)
    monkeypatch.setattr(image_files, "DRAFT_SIDE", 200)


def huge(tmp_path, name):
    """A 2,400 x 1,800 photo-like image (above PIL's scaled-down refusal threshold)."""
    gradient = np.linspace(0, 255, 2400, dtype=np.float32)[None, :, None] * np.ones((1800, 1, 3), np.float32)
    Image.fromarray(gradient.astype(np.uint8)).save(tmp_path / name)
    return tmp_path / name


def test_a_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path, small_limits):
    path = huge(tmp_path, "huge.jpg")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # what PIL alone does with it
    for dataset in (OxfordIIITPet, KMNIST):
        image, notes = dataset.image_for_prediction(path)
        assert notes[0] == "a 2400x1800 JPEG, decoded at 300x225"
    assert Image.MAX_IMAGE_PIXELS == 89_478  # PIL's own limit is back in place


def test_a_huge_image_of_another_format_is_refused_with_a_message(tmp_path, small_limits):
    path = huge(tmp_path, "huge.png")
    for dataset in (OxfordIIITPet, KMNIST):
        with pytest.raises(DataError, match=r"huge.png is 2400x1800 pixels .* scale it down first"):
            dataset.image_for_prediction(path)
    with pytest.raises(DataError, match="huge.png"):  # the training decode refuses it too
        OxfordIIITPet.decode_training_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("kept", [0.02, 0.5, 0.95])
def test_truncated_files_are_one_readable_error(tmp_path, fmt, kept):
    _, rgb = grey_and_rgb()
    Image.fromarray(rgb).resize((160, 128)).save(tmp_path / "full", format=fmt)
    data = (tmp_path / "full").read_bytes()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[:max(1, int(len(data) * kept))])
    for dataset in (OxfordIIITPet, KMNIST):
        with pytest.raises(DataError, match=rf"Cannot read the image {path}: .*(truncated|not an image)"):
            dataset.image_for_prediction(path)


@pytest.mark.parametrize("name, content, reason", [
    ("empty.png", b"", "not an image file"), ("notes.jpg", b"a text file\n", "not an image file"),
    ("noise.png", bytes(range(256)) * 8, "not an image file"), ("missing.png", None, "no such file"),
    ("folder.png", "dir", "is a directory"), ("fake.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "not an image file"),
])
def test_non_image_files_are_one_readable_error(tmp_path, name, content, reason):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    for dataset in (OxfordIIITPet, KMNIST):
        with pytest.raises(DataError, match=f"Cannot read the image {path}: .*{reason}"):
            dataset.image_for_prediction(path)


def test_predict_cli_predicts_every_readable_file_then_exits_2_and_on_a_bad_top_k(kmnist_checkpoint, tmp_path):
    """Unreadable files (first, in the middle) get an error line each; every readable one is predicted."""
    checkpoint, _ = kmnist_checkpoint
    Image.fromarray(glyph()).save(tmp_path / "full.png")
    Image.fromarray(255 - glyph()).save(tmp_path / "drawn.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    files = [tmp_path / name for name in ("cut.png", "full.png", "missing.png", "drawn.png")]
    alone = {path: run_script("predict.py", "--checkpoint", str(checkpoint), str(path)).stdout
             for path in (files[1], files[3])}
    cut = run_script("predict.py", "--checkpoint", str(checkpoint), *map(str, files))
    assert cut.returncode == 2 and cut.stderr.strip().splitlines() == [
        f"error: Cannot read the image {files[0]}: the file is truncated or corrupt (image file is "
        f"truncated). Pass a complete image file (PNG, JPEG, GIF, BMP, TIFF, WebP).",
        f"error: Cannot read the image {files[2]}: there is no such file. Pass a complete image file (PNG, JPEG, "
        f"GIF, BMP, TIFF, WebP).",
        f"note: {files[3]}: its background is light (border grey 255 of 255), so it was inverted to light strokes "
        f"on dark, as KMNIST is drawn",
        "error: 2 of 4 files could not be read as images (each is named above)."]
    assert cut.stdout == alone[files[1]] + alone[files[3]]
    top_k = run_script("predict.py", "--checkpoint", str(checkpoint), "--top-k", "0", str(tmp_path / "full.png"))
    assert top_k.returncode == 2 and "Traceback" not in top_k.stderr
    assert top_k.stderr.strip().endswith("error: --top-k must be at least 1, not 0")


# ---------------------------------------------------------------- evaluation on the checkpoint's task only


@pytest.mark.parametrize("overrides, named", [
    (["data.name='OxfordIIITPet'"], "data.name='OxfordIIITPet'"),
    (["model_name='VGG16'"], "model_name='VGG16'"),
    (["model.init_type={'weight': ('xavier_uniform_', {}), 'bias': ('zeros_', {})}"], "model="),
])
def test_evaluating_on_another_dataset_or_model_is_refused(kmnist_checkpoint, overrides, named):
    checkpoint, root = kmnist_checkpoint
    with pytest.raises(CheckpointError, match=rf"holds a MLP trained on KMNIST \(10 classes: o, ki, .*{named}"):
        evaluate_checkpoint(checkpoint, [f"data.root='{root}'", *overrides])


def test_a_test_set_with_other_classes_is_refused(kmnist_checkpoint, tmp_path):
    checkpoint, root = kmnist_checkpoint
    state = torch.load(checkpoint, weights_only=True)
    state["class_names"] = state["class_names"][::-1]
    torch.save(state, tmp_path / "reordered.pt")
    with pytest.raises(CheckpointError, match=r"has 10 classes: o, ki.* trained for 10 classes: wo, re"):
        evaluate_checkpoint(tmp_path / "reordered.pt", [f"data.root='{root}'"])


def test_test_images_that_do_not_fit_the_model_are_refused(kmnist_checkpoint):
    checkpoint, root = kmnist_checkpoint
    with pytest.raises(CheckpointError, match=r"shape \[1, 32, 32\]\) do not fit its model"):
        evaluate_checkpoint(checkpoint, [f"data.root='{root}'", "data.transforms.test=[('Resize', {'size': 32}), "
                                                                "('ToTensor', {})]"])


def test_evaluate_on_the_same_task_still_works_and_cli_refusal_exits_2(kmnist_checkpoint):
    checkpoint, root = kmnist_checkpoint
    metrics, classes = evaluate_checkpoint(checkpoint, [f"data.root='{root}'"])
    assert classes == KMNIST.classes and metrics["confusion"].sum() == 50
    result = run_script("evaluate.py", "--checkpoint", str(checkpoint), "--set", f"data.root='{root}'",
                        "data.name='OxfordIIITPet'")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "another task" in result.stderr


# ---------------------------------------------------------------- test-time augmentation


@pytest.fixture(scope="module")
def pets_checkpoint(tmp_path_factory):
    """(best.pt of a tiny ResNet-50 trained 1 epoch on synthetic pets at 32 px, the data root)."""
    base = tmp_path_factory.mktemp("pets")
    root = write_pets(base / "data", train_per_class=4, test_per_class=3)
    size_32 = "[('Resize', {'size': 40}), ('CenterCrop', {'size': 32}), ('ToTensor', {}), ('Normalize', {})]"
    cfg = load_config("resnet50", [f"data.root='{root}'", "data.md5=None", "data.download=False", "device='cpu'",
                                   "logger.backend='none'", f"exp_dir='{base}'", "train.epochs=1", "threads=1",
                                   "train.batch_size=4", "data.num_workers=0", "data.loader='workers'",
                                   "model={'variant':'A','zero_gamma':False,'width':4,'layers':[1,1,1,1]}",
                                   f"data.transforms.train={size_32}", f"data.transforms.test={size_32}"])
    run_dir = base / "run"
    run_dir.mkdir()
    Trainer(cfg, *build_loaders(cfg)).fit(run_dir)
    return run_dir / "best.pt", root


def test_evaluate_cli_reports_plain_and_tta_metrics_from_one_pass(pets_checkpoint, tmp_path):
    checkpoint, root = pets_checkpoint
    plain = run_script("evaluate.py", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--set",
                       f"data.root='{root}'")
    both = run_script("evaluate.py", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--tta", "flip",
                      "--set", f"data.root='{root}'")
    assert plain.returncode == 0 and both.returncode == 0, both.stderr
    plain, both = json.loads(plain.stdout), json.loads(both.stdout)
    assert plain["tta"] == "none" and "tta_accuracy" not in plain and both["tta"] == "flip"
    assert {key: both[key] for key in plain if key != "tta"} == {key: plain[key] for key in plain if key != "tta"}
    metrics, _ = evaluate_checkpoint(checkpoint, [f"data.root='{root}'", "eval.tta='flip'"])
    assert [both[f"tta_{key}"] for key in ("loss", "accuracy", "balanced_accuracy")] == [
        metrics[f"tta_{key}"] for key in ("loss", "accuracy", "balanced_accuracy")]
    assert metrics["tta_confusion"].sum() == 9 and both["tta_loss"] != both["loss"]


def test_predicted_probabilities_are_the_softmax_of_the_mean_view_logits(pets_checkpoint, tmp_path):
    checkpoint, root = pets_checkpoint
    files = sorted((root / "images").glob("*.jpg"))[:3]
    cfg, model, class_names = load_trained(checkpoint)
    transform = build_transforms(cfg.data.transforms.test, cfg.data.mean, cfg.data.std)
    images = torch.stack([transform(OxfordIIITPet.image_for_prediction(path)[0]) for path in files])
    for mode in ("flip", "flip_crops"):
        tops = [top for top, _, _ in predict_files(checkpoint, files, top_k=37, tta=mode)]
        with torch.no_grad():
            expected = torch.softmax(torch.stack([model(view) for view in tta_views(images, mode)]).mean(0), dim=1)
        for top, row in zip(tops, expected):
            assert dict(top) == pytest.approx(dict(zip(class_names, row.tolist())), abs=1e-6)


def test_an_invalid_or_refused_tta_exits_2_naming_the_key_and_the_choices(pets_checkpoint, kmnist_checkpoint, tmp_path):
    checkpoint, root = pets_checkpoint
    bad = run_script("evaluate.py", "--checkpoint", str(checkpoint), "--set", f"data.root='{root}'",
                     "eval.tta='mirror'")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "error: eval.tta='mirror' must be one of none, flip, flip_crops."
    option = run_script("predict.py", "--checkpoint", str(checkpoint), "--tta", "mirror", str(checkpoint))
    assert option.returncode == 2 and "argument --tta: invalid choice: 'mirror'" in option.stderr
    kmnist, kmnist_root = kmnist_checkpoint
    Image.fromarray(glyph()).save(tmp_path / "glyph.png")
    refused = [run_script("predict.py", "--checkpoint", str(kmnist), "--tta", "flip", str(tmp_path / "glyph.png")),
               run_script("evaluate.py", "--checkpoint", str(kmnist), "--tta", "flip", "--set",
                          f"data.root='{kmnist_root}'")]
    for result in refused:
        assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
        assert "--tta='flip' mirrors the images, and KMNIST characters are not mirror-symmetric" in result.stderr
