"""Adaptive pseudo ground truth (METHOD.md section 9) on hand-made detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_tiny_shapes
from weaksam.evaluation.cocofiles import ground_truth_from_dict
from weaksam.pgt.adaptive import PgtParams, adaptive_pgt, containment
from weaksam.pgt.stage import pgt_quality


def arr(x: list[list[float]] | list[float]) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# Class 0: scores 0.8 (d0), 0.5 (d1), 0.1 (d2); class 1: 0.6 (d3); class 2 (not labelled): 0.9.
BOXES = arr(
    [
        [0, 0, 10, 10],  # d0
        [20, 0, 30, 10],  # d1
        [40, 0, 50, 10],  # d2
        [0, 20, 10, 30],  # d3
        [60, 0, 70, 10],  # d4, class 2
    ]
)
SCORES = arr([0.8, 0.5, 0.1, 0.6, 0.9])
CLASSES = np.array([0, 0, 0, 1, 2])


def test_adaptive_keep_threshold_by_hand() -> None:
    # Class 0: hi 0.8, lo 0.1 -> s' = s / 0.7: d0 1.143, d1 0.714, d2 0.143.
    # t_keep 0.5 keeps d0 (first) and d1 (0.714); d2 fails. Class 1 has one detection: kept.
    # Class 2 is not among the image labels: dropped. Order: best first.
    keep = adaptive_pgt(BOXES, SCORES, CLASSES, [0, 1], PgtParams(t_keep=0.5))
    assert keep.tolist() == [0, 3, 1]
    # t_keep 0.75: d1's 0.714 is below it.
    assert adaptive_pgt(BOXES, SCORES, CLASSES, [0, 1], PgtParams(t_keep=0.75)).tolist() == [0, 3]


def test_subtract_min_variant_by_hand() -> None:
    # (s - lo) / (hi - lo): d1 -> 0.4 / 0.7 = 0.571, kept at t_keep 0.5; at 0.6 it is not.
    p = PgtParams(t_keep=0.6, subtract_min=True)
    assert adaptive_pgt(BOXES, SCORES, CLASSES, [0, 1], p).tolist() == [0, 3]
    p = PgtParams(t_keep=0.5, subtract_min=True)
    assert adaptive_pgt(BOXES, SCORES, CLASSES, [0, 1], p).tolist() == [0, 3, 1]


def test_top1_mode() -> None:
    keep = adaptive_pgt(BOXES, SCORES, CLASSES, [0, 1, 2], PgtParams(mode="top1"))
    assert keep.tolist() == [4, 0, 3]  # best of each labelled class, best first


def test_containment_suppression_by_hand() -> None:
    # Same class: a (0,0,10,10) lies in b (0,0,20,10): area(a & b) / area(a) = 1 >= 0.85 -> a
    # dropped; b in a: 100 / 200 = 0.5 -> b kept. c (12,0,20,10) overlaps b by 80 / 80 = 1 -> c
    # dropped. Class 1's box inside b is another class: kept.
    boxes = arr([[0, 0, 10, 10], [0, 0, 20, 10], [12, 0, 20, 10], [2, 2, 8, 8]])
    scores, classes = arr([0.9, 0.8, 0.7, 0.5]), np.array([0, 0, 0, 1])
    keep = adaptive_pgt(boxes, scores, classes, [0, 1], PgtParams(t_keep=0.0))
    assert keep.tolist() == [1, 3]  # the best box (a) is dropped too: it lies inside b


def test_identical_boxes_drop_each_other() -> None:
    boxes = arr([[0, 0, 10, 10], [0, 0, 10, 10]])
    keep = adaptive_pgt(boxes, arr([0.9, 0.8]), np.array([0, 0]), [0], PgtParams(t_keep=0.0))
    assert keep.tolist() == []


def test_ties_and_empty_inputs() -> None:
    # Two class-0 detections tie at 0.7: the first in the list is "first" and always kept; the
    # other has s' = 0.7 / (0 + 1e-8), far above any threshold. Both stay (no containment).
    boxes = arr([[0, 0, 10, 10], [30, 0, 40, 10]])
    keep = adaptive_pgt(boxes, arr([0.7, 0.7]), np.array([0, 0]), [0], PgtParams(t_keep=0.9))
    assert keep.tolist() == [0, 1]
    assert adaptive_pgt(np.zeros((0, 4)), arr([]), np.array([], int), [0], PgtParams()).size == 0
    assert adaptive_pgt(BOXES, SCORES, CLASSES, [], PgtParams()).size == 0  # no labels


def test_containment_matrix() -> None:
    c = containment(arr([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 0, 0]]))
    assert c[0, 1] == pytest.approx(0.5) and c[1, 0] == pytest.approx(0.5)
    assert c[2].tolist() == [0.0, 0.0, 0.0]  # an empty box contains nothing


def test_pgt_quality_by_hand() -> None:
    gt = ground_truth_from_dict(
        {
            "images": [{"id": 1, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10]},
                {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 50, 10, 10]},
            ],
        }
    )
    pgt = {
        "annotations": [
            # class a: a hit, a duplicate of the same box (false positive), a miss.
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8},
            {"image_id": 1, "category_id": 1, "bbox": [80, 80, 10, 10], "score": 0.7},
            # class b: a hit.
            {"image_id": 1, "category_id": 2, "bbox": [0, 50, 10, 10], "score": 0.6},
        ]
    }
    q = pgt_quality(gt, pgt, iou=0.5)
    assert q["precision"] == pytest.approx(2 / 4) and q["recall"] == pytest.approx(2 / 3)
    assert q["per_class"]["a"]["precision"] == pytest.approx(1 / 3)
    assert q["per_class"]["a"]["recall"] == pytest.approx(1 / 2)
    assert q["per_class"]["b"] == {"precision": 1.0, "recall": 1.0, "boxes": 1, "gt": 1}


def test_perfect_ranking_scores_each_detection_by_its_best_overlap_of_its_class() -> None:
    from weaksam.pgt.stage import perfect_ranking

    gt = ground_truth_from_dict(
        {
            "images": [
                {"id": 1, "width": 100, "height": 100},
                {"id": 2, "width": 100, "height": 100},
            ],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10]},
                {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10]},
            ],
        }
    )
    dets = [
        # image 1, class a: [0, 0, 10, 5] overlaps box 1 by 50 / 100 = 0.5
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.1},
        # image 1, class a: [15, 0, 10, 10] overlaps box 2 by 50 / 150 = 1/3, box 1 by 0
        {"image_id": 1, "category_id": 1, "bbox": [15, 0, 10, 10], "score": 0.9},
        # image 1, class b: no box of class b in image 1 -> 0
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.8},
        # image 2, class b: the same box -> 1
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.2},
    ]
    scores = [d["score"] for d in perfect_ranking(dets, gt)]
    assert scores == pytest.approx([0.5, 1 / 3, 0.0, 1.0])


def test_build_pgt_without_any_detection_gives_every_image_and_no_box(tmp_path: Path) -> None:
    from weaksam.pgt.stage import build_pgt

    out = build_tiny_shapes(tmp_path, num_trainval=3)
    pgt = build_pgt(str(out / "manifest.parquet"), [], "trainval", PgtParams())
    assert len(pgt["images"]) == 3 and pgt["annotations"] == []
