"""PASCAL VOC detection AP: the 11-point metric (VOC2007) and the area under the interpolated
precision/recall curve (VOC2010 and later), per class and mean.

Matching follows the VOC devkit: detections of a class in descending score order; each is
matched to the ground truth of its class in its image with the highest IoU; IoU >= ``iou``
makes it a true positive unless that ground truth was matched already (false positive) or is
marked ``ignore`` (difficult / crowd: neither true nor false positive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from weaksam.evaluation.boxes import best_match, box_iou_pairs, group_pairs
from weaksam.evaluation.cocofiles import Detections, GroundTruth

# The 11 recall points 0, 0.1, ..., 1.0, each the nearest double to i / 10.
RECALL_POINTS_11 = tuple(i / 10 for i in range(11))


def voc_ap_from_pr(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool) -> float:
    """AP from a precision/recall curve (both (D,), in detection order).

    11-point: mean over t in {0, 0.1, ..., 1} of max(precision[recall >= t]) (0 if none).
    Area: the precision envelope (monotone non-increasing from the right) integrated over the
    recall steps, with the end points (0, 0) and (1, 0) added.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        total = 0.0
        for t in RECALL_POINTS_11:
            mask = rec >= t
            total += float(prec[mask].max()) if mask.any() else 0.0
        return total / 11.0
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def coco101_ap_from_pr(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP as pycocotools interpolates it: the precision envelope read at the first detection
    reaching each of the 101 recall points 0, 0.01, ..., 1 (0 beyond the last), averaged."""
    rec = np.asarray(recall, dtype=np.float64)
    if rec.size == 0:
        return 0.0
    env = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    idx = np.searchsorted(rec, np.linspace(0.0, 1.0, 101), side="left")
    values = np.where(idx < rec.size, env[np.minimum(idx, rec.size - 1)], 0.0)
    return float(values.mean())


def match_class(
    gt: GroundTruth, dets: Detections, class_id: int, *, iou: float, plus_one: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """True/false positive flags of one class's detections in descending score order.

    Returns (tp (D',) bool, fp (D',) bool, npos): detections matched to ignored ground truth are
    removed from both arrays; npos counts the class's non-ignored ground truth. Vectorised: a
    detection is a true positive when it is the first, in score order, whose best ground truth
    (IoU >= ``iou``) is that box.
    """
    g = np.nonzero(gt.labels == class_id)[0]
    g = g[np.argsort(gt.box_image_ids[g], kind="stable")]  # by image, file order within
    npos = int((~gt.ignore[g]).sum())
    sel = np.nonzero(dets.labels == class_id)[0]
    order = sel[np.argsort(-dets.scores[sel], kind="stable")]
    qi, ti = group_pairs(dets.image_ids[order], gt.box_image_ids[g])
    overlaps = box_iou_pairs(dets.boxes[order[qi]], gt.boxes[g[ti]], plus_one=plus_one)
    best, target = best_match(qi, ti, overlaps, len(order))
    hit = (best >= iou) & (target >= 0)
    ignored = np.zeros(len(order), dtype=bool)
    ignored[hit] = gt.ignore[g[target[hit]]]
    candidates = np.nonzero(hit & ~ignored)[0]
    _, first = np.unique(target[candidates], return_index=True)
    tp = np.zeros(len(order), dtype=bool)
    tp[candidates[first]] = True
    keep = ~ignored
    return tp[keep], ~tp[keep], npos


@dataclass(frozen=True)
class ClassAP:
    name: str
    ap11: float  # NaN when the class has no non-ignored ground truth
    ap_area: float
    npos: int
    ndet: int


@dataclass(frozen=True)
class VocApResult:
    per_class: tuple[ClassAP, ...]
    iou: float
    plus_one: bool

    @property
    def map11(self) -> float:
        return _nanmean([c.ap11 for c in self.per_class])

    @property
    def map_area(self) -> float:
        return _nanmean([c.ap_area for c in self.per_class])

    def to_dict(self) -> dict[str, object]:
        return {
            "iou": self.iou,
            "plus_one": self.plus_one,
            "map11": self.map11,
            "map_area": self.map_area,
            "per_class": {
                c.name: {"ap11": c.ap11, "ap_area": c.ap_area, "npos": c.npos, "ndet": c.ndet}
                for c in self.per_class
            },
        }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def voc_detection_ap(
    gt: GroundTruth, dets: Detections, *, iou: float = 0.5, plus_one: bool = False
) -> VocApResult:
    """Per-class VOC AP (11-point and area) and their means over classes with ground truth."""
    results = []
    for class_id, name in enumerate(gt.classes):
        tp, fp, npos = match_class(gt, dets, class_id, iou=iou, plus_one=plus_one)
        if npos == 0:
            results.append(ClassAP(name, float("nan"), float("nan"), 0, len(tp)))
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / npos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        results.append(
            ClassAP(
                name,
                voc_ap_from_pr(recall, precision, use_07_metric=True),
                voc_ap_from_pr(recall, precision, use_07_metric=False),
                npos,
                len(tp),
            )
        )
    return VocApResult(tuple(results), iou, plus_one)
