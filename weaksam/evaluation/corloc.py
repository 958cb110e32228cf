"""CorLoc: the share of positive images whose top-1 detection of the class hits it.

For each class, over the images whose ground truth contains it (difficult objects included): take
the detection of that class with the highest score in the image (the first in file order on a
tie); a hit is IoU >= ``iou`` with any ground-truth box of the class. CorLoc of a class is
hits / positive images; the reported value is the mean over classes with positive images.
"""

from __future__ import annotations

import math

import numpy as np

from weaksam.evaluation.boxes import best_match, box_iou_pairs, group_pairs
from weaksam.evaluation.cocofiles import Detections, GroundTruth


def corloc(
    gt: GroundTruth, dets: Detections, *, iou: float = 0.5, plus_one: bool = False
) -> dict[str, object]:
    """Returns ``{"corloc": mean, "per_class": {name: {"corloc", "positives", "hits"}}}``."""
    num_classes = len(gt.classes)
    # Top-1 detection per (image, class): sort by score descending (stable), keep first occurrence.
    order = np.argsort(-dets.scores, kind="stable")
    det_keys = dets.image_ids[order] * num_classes + dets.labels[order]
    _, first = np.unique(det_keys, return_index=True)
    top1 = order[first]  # (T,) detection indices
    top1_keys = det_keys[first]
    gt_keys = gt.box_image_ids * num_classes + gt.labels
    g = np.argsort(gt_keys, kind="stable")
    qi, ti = group_pairs(top1_keys, gt_keys[g])
    overlaps = box_iou_pairs(dets.boxes[top1[qi]], gt.boxes[g[ti]], plus_one=plus_one)
    best, _ = best_match(qi, ti, overlaps, len(top1))
    hit_keys = top1_keys[best >= iou]
    positive_keys = np.unique(gt_keys)  # (image, class) pairs whose ground truth has the class
    positives = np.bincount(positive_keys % num_classes, minlength=num_classes)
    hits = np.bincount(hit_keys % num_classes, minlength=num_classes)
    per_class: dict[str, dict[str, float]] = {}
    for class_id, name in enumerate(gt.classes):
        p, h = int(positives[class_id]), int(hits[class_id])
        per_class[name] = {"corloc": h / p if p else float("nan"), "positives": p, "hits": h}
    finite = [v["corloc"] for v in per_class.values() if not math.isnan(v["corloc"])]
    return {
        "corloc": float(np.mean(finite)) if finite else float("nan"),
        "iou": iou,
        "per_class": per_class,
    }
