"""Reading images the same way in every stage.

Every stage sees an image as an RGB uint8 array in its *displayed* orientation: the EXIF
orientation tag is applied, and grayscale, palette, RGBA / LA (alpha dropped), CMYK and 16-bit
images are converted. ``probe_image`` checks a file once, when the manifest is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
EXIF_ORIENTATION_TAG = 0x0112
# Orientations whose transpose swaps width and height.
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class BadImageError(ValueError):
    """An image file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ImageInfo:
    """What the manifest needs to know about one image file.

    ``width``/``height`` are of the displayed image (after the EXIF orientation);
    ``raw_width``/``raw_height`` are of the stored pixel grid.
    """

    width: int
    height: int
    raw_width: int
    raw_height: int
    orientation: int
    mode: str


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except (TypeError, ValueError):  # a malformed tag is treated as "no rotation"
        return 1
    return value if 1 <= value <= 8 else 1


def probe_image(path: Path, *, verify: bool = True) -> ImageInfo:
    """Open ``path``, optionally decode every pixel, and return its sizes and orientation.

    Raises BadImageError for a missing, unreadable, truncated or non-image file.
    """
    if not path.is_file():
        raise BadImageError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            if verify:
                img.load()  # decodes all pixels: a truncated file raises here
            orientation = _orientation(img)
            raw_w, raw_h = img.size
            mode = img.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"{path}: cannot read image ({exc})") from exc
    if orientation in SWAPPING_ORIENTATIONS:
        width, height = raw_h, raw_w
    else:
        width, height = raw_w, raw_h
    return ImageInfo(width, height, raw_w, raw_h, orientation, mode)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB. 16/32-bit grayscale is scaled from its bit depth."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit data: 65535 -> 255. A 32-bit "I" image holding 16-bit values is treated alike.
        scale = 257.0 if img.mode != "I" or arr.max(initial=0) > 255 else 1.0
        arr8 = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros(arr.shape) if hi <= lo else (arr - lo) / (hi - lo) * 255
        return Image.fromarray(np.round(scaled).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_rgb(path: Path) -> np.ndarray:
    """Load ``path`` as an (H, W, 3) uint8 RGB array in displayed orientation."""
    try:
        with Image.open(path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = _to_rgb(upright if upright is not None else img)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"{path}: cannot read image ({exc})") from exc


def orient_boxes(boxes: np.ndarray, orientation: int, raw_w: int, raw_h: int) -> np.ndarray:
    """Map XYXY boxes (N, 4) from the stored pixel grid to the displayed orientation.

    Coordinates are continuous pixel edges (x2/y2 exclusive), so a flip maps x to W - x.
    ``orientation`` is the EXIF value 1..8, applied as PIL's ``ImageOps.exif_transpose`` does.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w, h = float(raw_w), float(raw_h)
    if orientation == 1:
        nx1, ny1, nx2, ny2 = x1, y1, x2, y2
    elif orientation == 2:  # mirror left-right
        nx1, ny1, nx2, ny2 = w - x2, y1, w - x1, y2
    elif orientation == 3:  # rotate 180
        nx1, ny1, nx2, ny2 = w - x2, h - y2, w - x1, h - y1
    elif orientation == 4:  # mirror top-bottom
        nx1, ny1, nx2, ny2 = x1, h - y2, x2, h - y1
    elif orientation == 5:  # transpose: (x, y) -> (y, x)
        nx1, ny1, nx2, ny2 = y1, x1, y2, x2
    elif orientation == 6:  # rotate 90 clockwise: (x, y) -> (H - y, x)
        nx1, ny1, nx2, ny2 = h - y2, x1, h - y1, x2
    elif orientation == 7:  # transverse: (x, y) -> (H - y, W - x)
        nx1, ny1, nx2, ny2 = h - y2, w - x2, h - y1, w - x1
    elif orientation == 8:  # rotate 90 counter-clockwise: (x, y) -> (y, W - x)
        nx1, ny1, nx2, ny2 = y1, w - x2, y2, w - x1
    else:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    return np.stack([nx1, ny1, nx2, ny2], axis=1).astype(np.float32)


def orient_mask(mask: np.ndarray, orientation: int) -> np.ndarray:
    """Apply the EXIF ``orientation`` to an (H, W) array, as ``orient_boxes`` does to boxes."""
    ops = {
        1: lambda m: m,
        2: lambda m: m[:, ::-1],
        3: lambda m: m[::-1, ::-1],
        4: lambda m: m[::-1, :],
        5: lambda m: m.T,
        6: lambda m: np.rot90(m, k=-1),
        7: lambda m: m.T[::-1, ::-1],
        8: lambda m: np.rot90(m, k=1),
    }
    if orientation not in ops:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    return np.ascontiguousarray(ops[orientation](mask))
