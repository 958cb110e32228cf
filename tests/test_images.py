"""Image reading: conversions, truncation and EXIF orientation (boxes and masks follow PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import write_image
from weaksam.data.images import (
    BadImageError,
    load_rgb,
    orient_boxes,
    orient_mask,
    probe_image,
)


def test_truncated_jpeg_is_bad(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.jpg", (80, 60))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"a\.jpg"):
        probe_image(path, verify=True)
    with pytest.raises(BadImageError, match=r"a\.jpg"):
        load_rgb(path)


def test_not_an_image_and_missing(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("hello")
    with pytest.raises(BadImageError, match="cannot read"):
        probe_image(tmp_path / "x.jpg")
    with pytest.raises(BadImageError, match="not found"):
        probe_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_modes_convert_to_rgb(tmp_path: Path, mode: str) -> None:
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = write_image(tmp_path / f"img{suffix}", (20, 10), mode=mode)
    arr = load_rgb(path)
    assert arr.shape == (10, 20, 3) and arr.dtype == np.uint8


def test_grayscale_values_are_replicated(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 5), 77, np.uint8)).save(tmp_path / "g.png")
    arr = load_rgb(tmp_path / "g.png")
    assert (arr == 77).all()


def test_sixteen_bit_is_scaled(tmp_path: Path) -> None:
    # 16-bit gray: 65535 -> 255, 257 * 100 -> 100, 0 -> 0.
    raw = np.array([[0, 25700, 65535]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    arr = load_rgb(tmp_path / "d.png")
    assert arr[0, :, 0].tolist() == [0, 100, 255]


def _exif_image(path: Path, raw: np.ndarray, orientation: int) -> None:
    img = Image.fromarray(raw)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_boxes_and_masks_match_pil(tmp_path: Path, orientation: int) -> None:
    raw_w, raw_h = 30, 20
    mask = np.zeros((raw_h, raw_w), np.uint8)
    mask[3:8, 4:13] = 255  # box x 4..13, y 3..8 (x2/y2 exclusive)
    path = tmp_path / "e.png"
    _exif_image(path, mask, orientation)
    info = probe_image(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert (info.height, info.width) == expected.shape
    assert np.array_equal(orient_mask(mask, orientation), expected)
    ys, xs = np.nonzero(expected)
    want = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    got = orient_boxes(np.array([[4, 3, 13, 8]]), orientation, raw_w, raw_h)[0]
    assert got.tolist() == want
    assert np.array_equal(load_rgb(path)[..., 0], expected)
