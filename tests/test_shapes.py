"""The generated shapes dataset: determinism and the properties that make it hard."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from weaksam.config import ShapesConfig, load_config
from weaksam.data.build import build_dataset
from weaksam.data.shapes import generate_shapes, render_image

CFG = ShapesConfig()


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_config_same_bytes(tmp_path: Path) -> None:
    small = replace(CFG, num_trainval=3, num_test=2, image_size=96)
    generate_shapes(small, tmp_path / "a", ("trainval", "test"))
    generate_shapes(small, tmp_path / "b", ("trainval", "test"))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    generate_shapes(replace(small, seed=1), tmp_path / "c", ("trainval", "test"))
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


@pytest.fixture(scope="module")
def rendered() -> list[tuple[np.ndarray, list, np.ndarray]]:
    return [render_image(CFG, i) for i in range(40)]


def test_object_counts_classes_and_repeats(rendered: list) -> None:
    counts = [len(objs) for _, objs, _ in rendered]
    assert min(counts) >= 1 and max(counts) <= 5 and len(set(counts)) >= 4
    repeated = [objs for _, objs, _ in rendered if len({o.class_name for o in objs}) < len(objs)]
    assert repeated, "some image has two instances of one class"
    assert {o.class_name for _, objs, _ in rendered for o in objs} == set(CFG.classes)


def test_sizes_from_small_to_half_the_image(rendered: list) -> None:
    sides = []
    for _, objs, _ in rendered:
        for o in objs:
            ys, xs = np.nonzero(o.mask)
            sides.append(max(np.ptp(xs), np.ptp(ys)) + 1)
    assert min(sides) < 0.12 * CFG.image_size
    assert max(sides) > 0.4 * CFG.image_size


def test_occlusion_and_min_visible(rendered: list) -> None:
    visible = []
    for i, (_, objs, index_map) in enumerate(rendered):
        for k, o in enumerate(objs):
            assert np.array_equal(index_map == k + 1, o.mask), f"image {i} object {k}"
            visible.append(o.mask.sum() / o.full_area)
    assert min(visible) >= CFG.min_visible
    assert sum(v < 0.9 for v in visible) >= 5, "several objects are partly hidden"


def test_colour_is_not_tied_to_class(rendered: list) -> None:
    means: dict[str, list[np.ndarray]] = {}
    for img, objs, _ in rendered:
        for o in objs:
            means.setdefault(o.class_name, []).append(img[o.mask].mean(axis=0))
    for name, cols in means.items():
        spread = np.ptp(np.array(cols), axis=0).max()
        assert spread > 100, f"{name}: instance colours span only {spread:.0f} levels"


def test_distractors_and_clutter_are_not_annotated(rendered: list) -> None:
    # Background pixels (index 0) vary a lot: texture, clutter and distractors.
    for img, _, index_map in rendered[:10]:
        bg = img[index_map == 0].astype(float)
        assert bg.std(axis=0).mean() > 15
    with_dis = render_image(CFG, 3)[0]
    without = render_image(replace(CFG, max_distractors=0), 3)[0]
    assert not np.array_equal(with_dis, without)


def test_build_gives_boxes_of_visible_pixels(tmp_path: Path) -> None:
    cfg = load_config(
        {
            "dataset": {
                "name": "s",
                "format": "shapes",
                "shapes": {"num_trainval": 4, "num_test": 2, "image_size": 96},
            }
        }
    ).dataset
    generate_shapes(cfg.shapes, tmp_path / "src", cfg.splits)
    build_dataset(cfg, tmp_path / "out", source_root=tmp_path / "src")
    gt = json.loads((tmp_path / "out" / "gt" / "trainval.json").read_text())
    from weaksam.data.masks import segmentation_to_mask

    for ann in gt["annotations"]:
        m = segmentation_to_mask(ann["segmentation"], 96, 96)
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [
            float(xs.min()),
            float(ys.min()),
            float(np.ptp(xs) + 1),
            float(np.ptp(ys) + 1),
        ]
        assert ann["area"] == float(m.sum())
