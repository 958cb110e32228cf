"""Reading COCO ground truth and COCO results files into arrays for the VOC-style metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class EvaluationInputError(ValueError):
    """A ground-truth or detections file is malformed; the message names the file."""


@dataclass(frozen=True)
class GroundTruth:
    """Flat arrays over all ground-truth boxes, in file order: image ids (G,), XYXY boxes
    (G, 4) float64, class ids (G,) int (0-based index into ``classes``), ignore flags (G,) bool
    (VOC difficult or crowd). ``image_ids`` lists every image, with boxes or not."""

    classes: tuple[str, ...]
    category_ids: tuple[int, ...]  # COCO category id of each class index
    image_ids: tuple[int, ...]
    box_image_ids: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    crowd: np.ndarray  # (G,) bool: iscrowd (also counted in ``ignore``)
    raw: dict[str, Any]


@dataclass(frozen=True)
class Detections:
    """Flat arrays over all detections: image ids (D,), class ids (D,), scores (D,),
    XYXY boxes (D, 4)."""

    image_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    raw: list[dict[str, Any]]


def _read(path: str | Path) -> Any:
    try:
        with Path(path).open() as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise EvaluationInputError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(f"{path}: malformed JSON ({exc})") from exc


def xywh_to_xyxy(bbox: np.ndarray) -> np.ndarray:
    b = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def ground_truth_from_dict(data: dict[str, Any], *, source: str = "<ground truth>") -> GroundTruth:
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise EvaluationInputError(f"{source}: missing list {key!r} (not COCO instances)")
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    cat_index = {int(c["id"]): i for i, c in enumerate(cats)}
    image_ids = tuple(int(img["id"]) for img in data["images"])
    known = set(image_ids)
    rows: list[tuple[int, int, bool, bool]] = []
    bboxes: list[list[float]] = []
    for ann in data["annotations"]:
        try:
            img, cat, bbox = int(ann["image_id"]), int(ann["category_id"]), ann["bbox"]
            bboxes.append([float(v) for v in bbox][:4])
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationInputError(
                f"{source}: bad annotation {str(ann)[:120]} ({exc})"
            ) from exc
        if len(bboxes[-1]) != 4:
            raise EvaluationInputError(
                f"{source}: annotation {ann.get('id')}: bbox must be [x, y, w, h]"
            )
        if img not in known:
            raise EvaluationInputError(
                f"{source}: annotation {ann.get('id')} has unknown image_id {img}"
            )
        if cat not in cat_index:
            raise EvaluationInputError(
                f"{source}: annotation {ann.get('id')} has unknown category_id {cat}"
            )
        crowd = bool(ann.get("iscrowd", 0))
        rows.append((img, cat_index[cat], bool(ann.get("ignore", 0)) or crowd, crowd))
    return GroundTruth(
        classes=tuple(str(c["name"]) for c in cats),
        category_ids=tuple(int(c["id"]) for c in cats),
        image_ids=image_ids,
        box_image_ids=np.array([r[0] for r in rows], dtype=np.int64),
        boxes=xywh_to_xyxy(np.array(bboxes, dtype=np.float64).reshape(-1, 4)),
        labels=np.array([r[1] for r in rows], dtype=np.int64),
        ignore=np.array([r[2] for r in rows], dtype=bool),
        crowd=np.array([r[3] for r in rows], dtype=bool),
        raw=data,
    )


def load_ground_truth(path: str | Path) -> GroundTruth:
    data = _read(path)
    if not isinstance(data, dict):
        raise EvaluationInputError(f"{path}: expected a COCO instances object")
    return ground_truth_from_dict(data, source=str(path))


def detections_from_list(
    dets: list[dict[str, Any]], gt: GroundTruth, *, source: str = "<detections>"
) -> Detections:
    """Validate COCO results entries against ``gt`` (known images and categories)."""
    if not isinstance(dets, list):
        raise EvaluationInputError(f"{source}: COCO results must be a JSON list")
    cat_index = {c: i for i, c in enumerate(gt.category_ids)}
    known = set(gt.image_ids)
    n = len(dets)
    image_ids, labels = np.zeros(n, np.int64), np.zeros(n, np.int64)
    scores, boxes = np.zeros(n, np.float64), np.zeros((n, 4), np.float64)
    for k, d in enumerate(dets):
        try:
            image_ids[k], cat, scores[k] = (
                int(d["image_id"]),
                int(d["category_id"]),
                float(d["score"]),
            )
            boxes[k] = xywh_to_xyxy(np.asarray(d["bbox"], dtype=np.float64))[0]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EvaluationInputError(
                f"{source}: detection {k} is malformed: {str(d)[:120]} ({exc})"
            ) from exc
        if image_ids[k] not in known:
            raise EvaluationInputError(
                f"{source}: detection {k} has image_id {image_ids[k]} not in the ground truth"
            )
        if cat not in cat_index:
            raise EvaluationInputError(
                f"{source}: detection {k} has category_id {cat} not in the ground truth"
            )
        labels[k] = cat_index[cat]
    return Detections(image_ids, labels, scores, boxes, dets)


def load_detections(path: str | Path, gt: GroundTruth) -> Detections:
    return detections_from_list(_read(path), gt, source=str(path))
