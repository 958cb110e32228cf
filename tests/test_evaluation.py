"""Evaluation: hand-worked cases, the VOC devkit's definition, and pycocotools on the same data."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.reference_voc import random_problem, reference_voc_eval
from weaksam.cli import main
from weaksam.evaluation.boxes import box_iou
from weaksam.evaluation.cocofiles import (
    EvaluationInputError,
    detections_from_list,
    ground_truth_from_dict,
    load_detections,
    load_ground_truth,
)
from weaksam.evaluation.corloc import corloc
from weaksam.evaluation.recall import greedy_matched_iou, proposal_recall
from weaksam.evaluation.textboxes import text_boxes_to_coco
from weaksam.evaluation.voc_ap import (
    coco101_ap_from_pr,
    match_class,
    voc_ap_from_pr,
    voc_detection_ap,
)


def xywh(b: list[float]) -> list[float]:
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def test_box_iou_hand_cases() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    # overlap 5x5 = 25, union 100 + 100 - 25 = 175
    assert box_iou(a, b)[0].tolist() == pytest.approx([25 / 175, 0.0, 1.0])
    # inclusive pixel indices 0..9 and 5..14: widths 10, overlap 5 pixels -> the same 25 / 175
    assert box_iou(np.array([[0, 0, 9, 9]]), np.array([[5, 5, 14, 14]]), plus_one=True)[
        0, 0
    ] == pytest.approx(25 / 175)
    assert box_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0  # empty union
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_ap_from_pr_hand_worked() -> None:
    # npos = 2, detections TP, FP, TP: recall (.5, .5, 1), precision (1, .5, 2/3).
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # 11-point: t = 0..0.5 (6 points) see precision 1; t = 0.6..1 (5 points) see 2/3.
    assert voc_ap_from_pr(rec, prec, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)
    # Area: recall 0 -> .5 at precision 1, .5 -> 1 at the envelope 2/3.
    assert voc_ap_from_pr(rec, prec, use_07_metric=False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 101-point: recall points 0..0.5 (51) read precision 1, 0.51..1 (50) read 2/3.
    assert coco101_ap_from_pr(rec, prec) == pytest.approx((51 + 50 * 2 / 3) / 101)
    # Recall exactly 0.3 counts for the 11-point threshold 0.3.
    assert voc_ap_from_pr(np.array([0.3]), np.array([1.0]), use_07_metric=True) == pytest.approx(
        4 / 11
    )


def hand_gt() -> dict[str, Any]:
    boxes = [
        (1, 1, [0, 0, 10, 10], 0),
        (1, 1, [20, 20, 30, 30], 1),  # difficult
        (2, 1, [0, 0, 10, 10], 0),
        (2, 2, [50, 50, 60, 60], 0),
    ]
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 120, "height": 120}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": i,
                "category_id": c,
                "bbox": xywh(b),
                "area": 100.0,
                "iscrowd": 0,
                "ignore": ig,
            }
            for k, (i, c, b, ig) in enumerate(boxes)
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }


def hand_dets() -> list[dict[str, Any]]:
    rows = [
        (1, [0, 0, 10, 10], 0.9),  # TP
        (1, [0, 0, 10, 10], 0.8),  # duplicate: FP
        (1, [20, 20, 30, 30], 0.7),  # on the difficult box: ignored
        (2, [100, 100, 110, 110], 0.6),  # FP
        (2, [1, 0, 11, 10], 0.5),  # IoU 90 / 110: TP
    ]
    return [{"image_id": i, "category_id": 1, "bbox": xywh(b), "score": s} for i, b, s in rows]


def test_voc_ap_hand_worked() -> None:
    gt = ground_truth_from_dict(hand_gt())
    dets = detections_from_list(hand_dets(), gt)
    tp, fp, npos = match_class(gt, dets, 0, iou=0.5, plus_one=False)
    assert (tp.tolist(), fp.tolist(), npos) == (
        [True, False, False, True],
        [False, True, True, False],
        2,
    )
    res = voc_detection_ap(gt, dets).to_dict()
    a, b, c = (res["per_class"][k] for k in "abc")  # type: ignore[index]
    # recall (.5, .5, .5, 1), precision (1, .5, 1/3, .5)
    assert a["ap11"] == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    assert a["ap_area"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert (b["ap11"], b["ap_area"], b["npos"]) == (0.0, 0.0, 1)  # ground truth, no detections
    assert math.isnan(c["ap11"]) and c["npos"] == 0  # no ground truth: left out of the mean
    assert res["map_area"] == pytest.approx(0.75 / 2)


def test_iou_exactly_at_threshold_is_a_hit() -> None:
    gt = ground_truth_from_dict(
        {
            **hand_gt(),
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20]}],
        }
    )
    dets = detections_from_list(
        [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0}], gt
    )
    assert voc_detection_ap(gt, dets).per_class[0].ap_area == 1.0  # IoU 100 / 200 = 0.5


def test_corloc_hand_worked() -> None:
    gt = ground_truth_from_dict(hand_gt())
    res = corloc(gt, detections_from_list(hand_dets(), gt))
    # class a: image 1 top-1 (0.9) hits, image 2 top-1 (0.6) misses -> 1/2; class b: 0/1.
    assert res["per_class"]["a"] == {"corloc": 0.5, "positives": 2, "hits": 1}  # type: ignore[index]
    assert res["per_class"]["b"]["corloc"] == 0.0  # type: ignore[index]
    assert res["corloc"] == pytest.approx(0.25)


def test_proposal_recall_hand_worked() -> None:
    gts = [np.array([[0, 0, 10, 10], [0, 0, 10, 20]]), np.array([[0, 0, 5, 5]])]
    # p1 overlaps g1 at 100/150 and g2 at 150/200; p2 overlaps g1 at 1 and g2 at 0.5.
    props = [np.array([[0, 0, 10, 15], [0, 0, 10, 10]]), np.zeros((0, 4))]
    assert greedy_matched_iou(np.array([[2 / 3, 0.75], [1.0, 0.5]])).tolist() == [1.0, 0.75]
    res = proposal_recall(gts, props, n_values=(1,), iou_thresholds=(0.5, 0.7))
    assert res["n"] == [1, "all"]
    # N = 1: p1 goes to g2 (0.75), g1 and the second image's box are missed: 1 of 3.
    # all: p2 -> g1 (1.0), p1 -> g2 (0.75): 2 of 3 (the image without proposals still counts).
    assert res["recall"] == {
        "0.5": pytest.approx([1 / 3, 2 / 3]),
        "0.7": pytest.approx([1 / 3, 2 / 3]),
    }
    assert res["mabo"] == pytest.approx((1.0 + 0.75 + 0.0) / 3)
    assert res["boxes_per_image"] == 1.0 and res["num_gt"] == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("plus_one", [False, True])
def test_voc_ap_equals_devkit_reference(seed: int, plus_one: bool) -> None:
    gt_dict, det_list = random_problem(seed, crowded=True)
    gt = ground_truth_from_dict(gt_dict)
    res = voc_detection_ap(gt, detections_from_list(det_list, gt), plus_one=plus_one)
    for c, cls in zip((1, 2, 3), res.per_class, strict=True):
        assert cls.ap11 == pytest.approx(
            reference_voc_eval(gt_dict, det_list, c, plus_one=plus_one, use_07=True), abs=1e-12
        )
        assert cls.ap_area == pytest.approx(
            reference_voc_eval(gt_dict, det_list, c, plus_one=plus_one, use_07=False), abs=1e-12
        )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ap50_agrees_with_pycocotools(seed: int) -> None:
    gt_dict, det_list = random_problem(seed, crowded=False)
    coco_gt = COCO()
    coco_gt.dataset = json.loads(json.dumps(gt_dict))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(det_list))), "bbox")
        ev.evaluate()
        ev.accumulate()
    gt = ground_truth_from_dict(gt_dict)
    dets = detections_from_list(det_list, gt)
    for k in range(3):
        tp, fp, npos = match_class(gt, dets, k, iou=0.5, plus_one=False)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        ours = coco101_ap_from_pr(ctp / npos, ctp / np.maximum(ctp + cfp, np.finfo(float).eps))
        theirs = float(ev.eval["precision"][0, :, k, 0, 2].mean())  # IoU 0.5, all areas, 100 dets
        assert ours == pytest.approx(theirs, abs=1e-9)
        area = voc_ap_from_pr(ctp / npos, ctp / np.maximum(ctp + cfp, 1e-12), use_07_metric=False)
        assert area == pytest.approx(theirs, abs=0.02)  # area vs 101 samples of the same curve


def test_cartucho_example_end_to_end(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = shared_data / "cartucho-map"
    gt_path, det_path, out = tmp_path / "gt.json", tmp_path / "det.json", tmp_path / "m.json"
    assert (
        main(
            [
                "convert-text-boxes",
                "--gt-dir",
                str(src / "ground-truth"),
                "--det-dir",
                str(src / "detection-results"),
                "--images-dir",
                str(src / "images-optional"),
                "--out-gt",
                str(gt_path),
                "--out-det",
                str(det_path),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--gt",
                str(gt_path),
                "--detections",
                str(det_path),
                "--plus-one",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    gt_dict = json.loads(gt_path.read_text())
    det_list = json.loads(det_path.read_text())
    assert (len(gt_dict["images"]), len(gt_dict["annotations"]), len(det_list)) == (85, 686, 494)
    reference = [
        reference_voc_eval(gt_dict, det_list, c["id"], plus_one=True, use_07=False)
        for c in gt_dict["categories"]
    ]
    expected = float(np.nanmean(reference))
    assert metrics["voc"]["map_area"] == pytest.approx(expected, abs=1e-12)
    assert f"{100 * expected:5.1f}" in printed
    assert 0.25 < expected < 0.40  # measured 0.310: a sanity band, the equality above is the check


@pytest.mark.parametrize(
    ("dets", "message"),
    [
        (
            [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}],
            "image_id 99 not in the ground truth",
        ),
        (
            [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1}],
            "category_id 7 not in the ground truth",
        ),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], "malformed"),
        ({"not": "a list"}, "must be a JSON list"),
    ],
)
def test_bad_detections(dets: Any, message: str) -> None:
    gt = ground_truth_from_dict(hand_gt())
    with pytest.raises(EvaluationInputError, match=message):
        detections_from_list(dets, gt)


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(EvaluationInputError, match="malformed JSON"):
        load_ground_truth(tmp_path / "bad.json")
    (tmp_path / "gt.json").write_text(json.dumps({"images": []}))
    with pytest.raises(EvaluationInputError, match="missing list 'annotations'"):
        load_ground_truth(tmp_path / "gt.json")
    gt = ground_truth_from_dict(hand_gt())
    with pytest.raises(EvaluationInputError, match="not found"):
        load_detections(tmp_path / "nope.json", gt)
    bad = hand_gt()
    bad["annotations"][0]["image_id"] = 5
    with pytest.raises(EvaluationInputError, match="unknown image_id 5"):
        ground_truth_from_dict(bad)
    assert (
        main(
            [
                "evaluate",
                "--gt",
                str(tmp_path / "bad.json"),
                "--detections",
                str(tmp_path / "bad.json"),
            ]
        )
        == 2
    )


def test_text_boxes_converter_difficult_and_errors(tmp_path: Path) -> None:
    (tmp_path / "gt").mkdir()
    (tmp_path / "det").mkdir()
    (tmp_path / "gt" / "a.txt").write_text("dog 1 2 11 12\ncat 5 5 20 20 difficult\n")
    (tmp_path / "det" / "a.txt").write_text("dog 0.9 1 2 11 12\n")
    gt, dets = text_boxes_to_coco(tmp_path / "gt", tmp_path / "det")
    assert [a["ignore"] for a in gt["annotations"]] == [0, 1]
    assert gt["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 10.0]
    assert dets == [{"image_id": 1, "category_id": 2, "bbox": [1.0, 2.0, 10.0, 10.0], "score": 0.9}]
    (tmp_path / "det" / "a.txt").write_text("dog 1 2 11\n")
    with pytest.raises(EvaluationInputError, match=r"a.txt:1"):
        text_boxes_to_coco(tmp_path / "gt", tmp_path / "det")


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from weaksam.data.masks import encode_rle

    return encode_rle(mask)


def test_coco_mask_ap_at_extra_thresholds_hand_worked() -> None:
    from weaksam.evaluation.coco import coco_ap

    gt_mask = np.zeros((40, 40), bool)
    gt_mask[0:20, 0:20] = True  # 400 pixels
    half = np.zeros((40, 40), bool)
    half[0:20, 0:10] = True  # 200 pixels inside the ground truth: mask IoU 200 / 400 = 0.5
    gt = {
        "images": [{"id": 1, "width": 40, "height": 40}, {"id": 2, "width": 40, "height": 40}],
        "annotations": [
            {
                "id": i,
                "image_id": i,
                "category_id": 1,
                "bbox": [0, 0, 20, 20],
                "area": 400.0,
                "iscrowd": 0,
                "segmentation": _rle(gt_mask),
            }
            for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    dets = [
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [0, 0, 20, 20],
            "score": 0.9,
            "segmentation": _rle(gt_mask),
        },
        {
            "image_id": 2,
            "category_id": 1,
            "bbox": [0, 0, 20, 20],
            "score": 0.8,
            "segmentation": _rle(half),
        },
    ]
    segm = coco_ap(gt, dets, iou_type="segm")
    # IoU 0.25 and 0.5: both detections match (the half mask has IoU exactly 0.5) -> AP 1.
    assert segm["AP25"] == pytest.approx(1.0) and segm["AP50"] == pytest.approx(1.0)
    # IoU 0.7 and 0.75: only image 1 matches; precision 1 up to recall 0.5, then nothing: the
    # 101-point curve reads 1 at recall 0..0.5 (51 points) -> 51 / 101.
    assert segm["AP70"] == pytest.approx(51 / 101) and segm["AP75"] == pytest.approx(51 / 101)
    # The boxes are identical, so box AP is 1 at every threshold.
    bbox = coco_ap(gt, dets, iou_type="bbox")
    assert bbox["AP"] == pytest.approx(1.0) and bbox["AP70"] == pytest.approx(1.0)
    assert math.isnan(coco_ap(gt, [], iou_type="bbox")["AP"])


def test_coco_mask_ap_leaves_out_images_without_ground_truth_masks() -> None:
    """Image 2's object has a box but no mask (as VOC12 images outside SegmentationObject):
    mask AP is computed on image 1 alone, where the detection is exact (AP 1), and image 2 is
    counted, not scored as a miss nor a KeyError. Box AP still uses both images."""
    from weaksam.evaluation.coco import coco_ap

    gt_mask = np.zeros((40, 40), bool)
    gt_mask[0:20, 0:20] = True
    gt = {
        "images": [{"id": 1, "width": 40, "height": 40}, {"id": 2, "width": 40, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0,
             "iscrowd": 0, "segmentation": _rle(gt_mask)},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0,
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }  # fmt: skip
    dets = [
        {"image_id": i, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9,
         "segmentation": _rle(gt_mask)}
        for i in (1, 2)
    ]  # fmt: skip
    segm = coco_ap(gt, dets, iou_type="segm")
    assert segm["AP50"] == pytest.approx(1.0) and segm["images_without_masks"] == 1
    assert coco_ap(gt, dets, iou_type="bbox")["AP50"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 of 2 detections have no segmentation"):
        coco_ap(
            gt,
            [dets[0], {k: v for k, v in dets[1].items() if k != "segmentation"}],
            iou_type="segm",
        )


def test_coco_mask_ap_keeps_a_segmented_image_without_its_pixel_less_object() -> None:
    """Image 1 was read with its instance map (``segmented``): object 2 has no pixels there, so
    it is no instance of the mask ground truth, and the exact mask of object 1 gives AP50 1 on
    image 1, which is kept (before: the whole image was left out and AP50 was NaN)."""
    from weaksam.evaluation.coco import coco_ap

    gt_mask = np.zeros((40, 40), bool)
    gt_mask[0:20, 0:20] = True
    gt = {
        "images": [{"id": 1, "width": 40, "height": 40, "segmented": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0,
             "iscrowd": 0, "segmentation": _rle(gt_mask)},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [25, 25, 10, 10], "area": 100.0,
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }  # fmt: skip
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9,
         "segmentation": _rle(gt_mask)}
    ]  # fmt: skip
    segm = coco_ap(gt, dets, iou_type="segm")
    assert segm["AP50"] == pytest.approx(1.0) and segm["images_without_masks"] == 0
    # the box ground truth keeps both objects: one of two found at IoU 0.5, precision 1
    assert coco_ap(gt, dets, iou_type="bbox")["AR100"] == pytest.approx(0.5)


def test_evaluate_reports_segm_when_detections_have_masks() -> None:
    from weaksam.evaluation.report import evaluate_detections, format_metrics

    gt_dict = hand_gt()
    gt = ground_truth_from_dict(gt_dict)
    res = evaluate_detections(gt, detections_from_list(hand_dets(), gt))
    assert "coco_segm" not in res and res["voc"]["map_area"] == pytest.approx(0.375)
    assert "CorLoc" in format_metrics(res)


def test_recall_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="2 ground-truth sets but 1 proposal sets"):
        proposal_recall([np.zeros((0, 4)), np.zeros((0, 4))], [np.zeros((0, 4))])
