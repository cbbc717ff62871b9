"""Image files of any kind decoded to 8-bit pixels, with one readable error for anything else.

Every PIL mode is mapped to 8 bits per channel without clipping: 16-bit grey (`I;16*`) is
scaled by 255/65535, 32-bit integer (`I`) and float (`F`) grey by the range their values
use (0-255, 0-65535, 0-1 for floats, else their own min-max), palettes and CMYK/YCbCr/LAB/HSV
become RGB, and transparency is flattened onto a background that contrasts with the visible
pixels (white behind dark content, black behind light content). Truncated, corrupt and
non-image files, and images above MAX_PIXELS, raise DataError naming the file.

Only the formats a photo or scan comes in (IMAGE_FORMATS) are opened, whatever the file's
name: any other file (EPS, PDF, ICO, ...) is refused with its format named (file_format),
so an untrusted file never reaches PIL's other decoders nor an external program such as
Ghostscript.

For prediction (`for_prediction=True`) an image is also turned upright by its EXIF
orientation, and a JPEG larger than DRAFT_ABOVE pixels is decoded at a reduced scale
(JPEG draft mode: 1/2 to 1/8, never below DRAFT_SIDE px on the shorter side), so a photo of
any resolution is read in bounded memory. Each such step is reported in the returned notes.
"""
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.errors import DataError

MAX_PIXELS = 2 * 89_478_485  # PIL's own refusal threshold (twice Image.MAX_IMAGE_PIXELS's default)
DRAFT_ABOVE = 4096 * 4096  # JPEGs with more pixels are decoded at a reduced scale for prediction
DRAFT_SIDE = 1024  # the shorter side a reduced JPEG decode keeps at least
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, UnidentifiedImageError,
                 Image.DecompressionBombError, MemoryError)
COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
EXIF_ORIENTATION = 0x0112
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")  # PIL's names of the formats opened
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF, WebP"
PREDICTION_ADVICE = f"Pass a complete image file ({FORMAT_NAMES})."
# Leading bytes of common files PIL cannot identify (or should not be asked to), and their names.
SIGNATURES = ((b"%PDF-", "PDF"), (b"%!PS", "PostScript (EPS)"), (b"\xc5\xd0\xd3\xc6", "PostScript (EPS)"),
              (b"PK\x03\x04", "ZIP"), (b"\x1f\x8b", "gzip"), (b"<svg", "SVG"), (b"<?xml", "XML or SVG"),
              (b"<!doctype html", "HTML"), (b"<html", "HTML"))
ISO_MEDIA_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}  # bytes 8-11 after 'ftyp'


def read_image(path, for_prediction=False, advice=""):
    """(PIL image in mode L or RGB, [notes]) of the image file at `path`, decoded by content;
    `advice` ends the DataError message of a file that cannot be read."""
    path, notes, limit = Path(path), [], Image.MAX_IMAGE_PIXELS
    try:
        if for_prediction:
            Image.MAX_IMAGE_PIXELS = None  # PIL would refuse a huge JPEG before draft mode can shrink it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_size decides instead
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                if for_prediction and image.format == "JPEG" and image.width * image.height > DRAFT_ABOVE:
                    full = image.size
                    scale = max(1, min(8, min(full) // DRAFT_SIDE))
                    image.draft(image.mode, (full[0] // scale, full[1] // scale))
                    notes.append(f"a {full[0]}x{full[1]} JPEG, decoded at {image.size[0]}x{image.size[1]}")
                check_size(path, image)
                image.load()
                if for_prediction and image.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1):
                    image = ImageOps.exif_transpose(image)
                    notes.append("turned upright by its EXIF orientation")
                image, depth_notes = to_8_bit(image)
    except DECODE_ERRORS as error:
        raise DataError(f"Cannot read the image {path}: {describe(error, path)}. {advice}".rstrip()) from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    image, alpha_notes = flatten_alpha(image)
    return image, notes + depth_notes + alpha_notes


def check_size(path: Path, image: Image.Image) -> None:
    """DataError for an image above MAX_PIXELS (after any draft reduction)."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(f"The image {path} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
                        f"more than the {MAX_PIXELS / 1e6:.0f} megapixels this library decodes: scale it down "
                        f"first (any JPEG is read at a reduced scale instead).")


def describe(error: Exception, path: Path) -> str:
    """A short reason for a failure to decode the file at `path`."""
    if isinstance(error, UnidentifiedImageError):
        found = file_format(path)
        if found is None:
            return f"it is not an image file of a format read here ({FORMAT_NAMES})"
        return f"its content is in the {found} format, not one of those read here ({FORMAT_NAMES})"
    if isinstance(error, FileNotFoundError):
        return "there is no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, MemoryError):
        return "not enough memory to decode it"
    text = str(error) or type(error).__name__
    if isinstance(error, (OSError, EOFError, struct.error, zlib.error, SyntaxError)):
        return f"the file is truncated or corrupt ({text})"
    return text


def file_format(path: Path):
    """The name of the format of the file at `path` ('PDF', 'PostScript (EPS)', 'ICO', ...), or
    None when unknown: by its leading bytes, else by PIL's header parsers. Nothing is decoded
    and no external program runs (PIL's plugins only read headers on open)."""
    try:
        with open(path, "rb") as file:
            head = file.read(64)
        for signature, name in SIGNATURES:
            if head.lstrip()[:len(signature)].lower() == signature.lower():
                return name
        if head[4:8] == b"ftyp" and head[8:12] in ISO_MEDIA_BRANDS:
            return ISO_MEDIA_BRANDS[head[8:12]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.format
    except DECODE_ERRORS:
        return None


def to_8_bit(image: Image.Image):
    """(image in mode L, LA, RGB or RGBA, [notes]) with every mode's values mapped to 0-255."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image, []
    if mode == "1":
        return image.convert("L"), []
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB"), []
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper()), []
    if mode in COLOUR_MODES:
        return image.convert("RGB"), []
    if mode.startswith("I;16") or mode in ("I", "F"):
        return scale_grey(np.asarray(image), mode)
    raise ValueError(f"its pixel mode {mode} is not supported")


def scale_grey(values: np.ndarray, mode: str):
    """(L image, [note]) of 16-bit, 32-bit integer or float grey values [H, W]."""
    values = np.nan_to_num(values.astype(np.float64))
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode.startswith("I;16") or (low >= 0 and 255 < high <= 65535 and mode == "I"):
        scale, offset, what = 255 / 65535, 0.0, "16-bit grey scaled to 8 bits"
    elif mode == "F" and low >= 0 and high <= 1:
        scale, offset, what = 255.0, 0.0, "float grey in [0, 1] scaled to 8 bits"
    elif low >= 0 and high <= 255:
        scale, offset, what = 1.0, 0.0, None
    else:
        scale, offset = 255 / (high - low) if high > low else 0.0, low
        what = f"{mode} grey in [{low:g}, {high:g}] stretched to 8 bits"
    pixels = np.clip(np.rint((values - offset) * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "L"), [what] if what else []


def flatten_alpha(image: Image.Image):
    """(image in mode L or RGB, [notes]): LA/RGBA composited onto white, or onto black when the
    visible pixels are light on average (so light strokes on a transparent canvas stay visible)."""
    if image.mode not in ("LA", "RGBA"):
        return image, []
    alpha = np.asarray(image.getchannel("A"), dtype=np.float64) / 255
    if alpha.min() == 1:
        return image.convert(image.mode[:-1]), []
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    visible = float((grey * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0
    background = 0 if visible >= 128 else 255
    base = Image.new(image.mode[:-1], image.size, (background,) * len(image.mode[:-1]))
    base.paste(image.convert(image.mode[:-1]), mask=image.getchannel("A"))
    return base, [f"transparent pixels filled with {'black' if background == 0 else 'white'}"]
