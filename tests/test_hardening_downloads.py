"""Hardening II (issue 20), items 2, 3, 6, 8 and 21 on untrusted inputs: image files of other
formats, credentials in URLs, downloads that are not what they claim or that stall, leftovers
of killed downloads and the modes of downloaded files."""
import subprocess

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from datasets import image_files
from executors.baseline import ImageFiles
from utils.errors import DataError

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"newpath 0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n")
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


@pytest.fixture
def no_subprocess(monkeypatch):
    """Fail the test if anything starts a program (PIL's EPS plugin runs Ghostscript)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")
    for name in ("Popen", "check_call", "run", "call", "check_output"):
        monkeypatch.setattr(subprocess, name, refuse)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # as in a fresh process: PIL would probe for gs


@pytest.mark.parametrize("for_prediction", [False, True])
@pytest.mark.parametrize("name, content, found", [("x.jpg", EPS, "PostScript (EPS)"), ("scan.png", PDF, "PDF")])
def test_a_file_of_another_format_is_refused_by_name_without_running_a_program(
        tmp_path, no_subprocess, name, content, found, for_prediction):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as raised:
        image_files.read_image(tmp_path / name, for_prediction=for_prediction)
    assert str(raised.value).startswith(
        f"Cannot read the image {tmp_path / name}: its content is in the {found} format, not one of those read "
        f"here (PNG, JPEG, GIF, BMP, TIFF, WebP).")


def test_an_image_format_pil_reads_but_photos_are_not_in_is_refused_with_pil_s_name(tmp_path, no_subprocess):
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "icon.ico", format="ICO")
    (tmp_path / "icon.ico").rename(tmp_path / "photo.jpg")
    with pytest.raises(DataError, match=r"photo\.jpg: its content is in the ICO format, not one of those"):
        image_files.read_image(tmp_path / "photo.jpg")


def test_the_six_photo_formats_still_open_whatever_their_file_name(tmp_path, no_subprocess):
    pixels = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"):
        path = tmp_path / f"{fmt}.dat"
        Image.fromarray(pixels).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        image, _ = image_files.read_image(path)
        assert image.size == (16, 16) and image.mode in ("RGB", "L"), fmt


def test_the_benchmark_baseline_opens_only_the_photo_formats_too(tmp_path, no_subprocess):
    (tmp_path / "x.jpg").write_bytes(EPS)
    with pytest.raises(Image.UnidentifiedImageError):
        ImageFiles([tmp_path / "x.jpg"], [0], transform=lambda image: image)[0]
