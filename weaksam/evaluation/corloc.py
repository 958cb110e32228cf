"""CorLoc: the share of positive images whose top-1 detection of the class hits it.

For each class, over the images whose ground truth contains it (difficult objects included): take
the detection of that class with the highest score in the image (the first in file order on a
tie); a hit is IoU >= ``iou`` with any ground-truth box of the class. CorLoc of a class is
hits / positive images; the reported value is the mean over classes with positive images.
"""

from __future__ import annotations

import math

import numpy as np

from weaksam.evaluation.boxes import box_iou
from weaksam.evaluation.cocofiles import Detections, GroundTruth


def corloc(
    gt: GroundTruth, dets: Detections, *, iou: float = 0.5, plus_one: bool = False
) -> dict[str, object]:
    """Returns ``{"corloc": mean, "per_class": {name: {"corloc", "positives", "hits"}}}``."""
    # Top-1 detection per (image, class): sort by score descending (stable), keep first occurrence.
    order = np.argsort(-dets.scores, kind="stable")
    keys = np.stack([dets.image_ids[order], dets.labels[order]], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    top1 = {(int(dets.image_ids[order[f]]), int(dets.labels[order[f]])): order[f] for f in first}
    per_class: dict[str, dict[str, float]] = {}
    for class_id, name in enumerate(gt.classes):
        positives = hits = 0
        for image_id in gt.image_ids:
            gmask = gt.labels[image_id] == class_id
            if not gmask.any():
                continue
            positives += 1
            k = top1.get((image_id, class_id))
            if k is not None:
                overlaps = box_iou(
                    dets.boxes[k][None], gt.boxes[image_id][gmask], plus_one=plus_one
                )
                hits += int(overlaps.max() >= iou)
        value = hits / positives if positives else float("nan")
        per_class[name] = {"corloc": value, "positives": positives, "hits": hits}
    finite = [v["corloc"] for v in per_class.values() if not math.isnan(v["corloc"])]
    return {
        "corloc": float(np.mean(finite)) if finite else float("nan"),
        "iou": iou,
        "per_class": per_class,
    }
