"""Shared fixtures: small VOC/COCO trees written by the tests, and the shared real datasets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def build_tiny_shapes(root: Path, *, num_trainval: int, num_test: int = 2) -> Path:
    """Generate a small 64 px shapes dataset under ``root / "src"`` and build it into
    ``root / "out"`` (manifest, ground truth); returns ``root / "out"``."""
    from weaksam.config import load_config
    from weaksam.data.build import build_dataset
    from weaksam.data.shapes import generate_shapes

    shapes = {"num_trainval": num_trainval, "num_test": num_test, "image_size": 64}
    cfg = load_config({"dataset": {"name": "t", "format": "shapes", "shapes": shapes}}).dataset
    generate_shapes(cfg.shapes, root / "src", cfg.splits)
    build_dataset(cfg, root / "out", source_root=root / "src")
    return root / "out"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def write_image(
    path: Path, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: object
) -> Path:
    """A deterministic noise image of ``size`` (W, H)."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


def voc_xml(
    filename: str,
    size: tuple[int, int] | None,
    objects: list[tuple[str, tuple[float, float, float, float], bool]],
) -> str:
    """VOC XML text; objects are (name, (xmin, ymin, xmax, ymax), difficult)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    if size is not None:
        s = ET.SubElement(root, "size")
        ET.SubElement(s, "width").text = str(size[0])
        ET.SubElement(s, "height").text = str(size[1])
        ET.SubElement(s, "depth").text = "3"
    for name, (x1, y1, x2, y2), difficult in objects:
        o = ET.SubElement(root, "object")
        ET.SubElement(o, "name").text = name
        ET.SubElement(o, "difficult").text = "1" if difficult else "0"
        b = ET.SubElement(o, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True):
            ET.SubElement(b, tag).text = str(v)
    return ET.tostring(root, encoding="unicode")


VocImage = tuple[str, str, list[tuple[str, tuple[float, float, float, float], bool]]]


@pytest.fixture
def make_voc(tmp_path: Path) -> Callable[..., Path]:
    """Build a VOC devkit tree: ``make_voc({"trainval": [(id, xml_or_None, ...)], ...})``.

    Each entry is (image_id, objects) and gets a 64x48 RGB JPEG and an XML with its size.
    """

    def build(splits: dict[str, list[tuple[str, list]]], size: tuple[int, int] = (64, 48)) -> Path:
        root = tmp_path / "voc"
        for split, items in splits.items():
            for image_id, objects in items:
                write_image(root / "JPEGImages" / f"{image_id}.jpg", size)
                ann = root / "Annotations" / f"{image_id}.xml"
                ann.parent.mkdir(parents=True, exist_ok=True)
                ann.write_text(voc_xml(f"{image_id}.jpg", size, objects))
            main = root / "ImageSets" / "Main"
            main.mkdir(parents=True, exist_ok=True)
            (main / f"{split}.txt").write_text("".join(f"{i}\n" for i, _ in items))
        return root

    return build


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how long the SLURM tier's cluster took to come up (CI's log keeps it)."""
    from tests.test_slurm import BRING_UP

    if "seconds" in BRING_UP:
        terminalreporter.write_line(
            f"SLURM tier: single-node cluster brought up in {BRING_UP['seconds']:.1f} s"
        )
