"""Pointing accuracy of peak prompts: the share of peak points that fall inside a ground-truth box
of their class (all ground truth, difficult included). A point is the pixel (x, y), taken at its
centre (x + 0.5, y + 0.5). Reported for all peaks and for the top peak of each (image, class),
and for the top peaks of the classes the image really has (on a split whose classes come from the
classifier, the others are classification errors, not localisation errors)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from weaksam.evaluation.boxes import group_pairs
from weaksam.evaluation.cocofiles import GroundTruth


def _inside_any(points: pd.DataFrame, gt: GroundTruth, coco_ids: dict[str, int]) -> np.ndarray:
    """(N,) bool: point n lies inside some ground-truth box of its class in its image."""
    c = len(gt.classes)
    point_keys = points["image_id"].map(coco_ids).to_numpy(np.int64) * c + points[
        "class_id"
    ].to_numpy(np.int64)
    gt_keys = gt.box_image_ids * c + gt.labels
    g = np.argsort(gt_keys, kind="stable")
    qi, ti = group_pairs(point_keys, gt_keys[g])  # (P,) point and box index pairs
    b = gt.boxes[g[ti]]
    cx = points["x"].to_numpy(np.float64)[qi] + 0.5
    cy = points["y"].to_numpy(np.float64)[qi] + 0.5
    inside = (b[:, 0] <= cx) & (cx <= b[:, 2]) & (b[:, 1] <= cy) & (cy <= b[:, 3])
    hits = np.zeros(len(points), dtype=bool)
    hits[qi[inside]] = True
    return hits


def pointing_accuracy(
    prompts: pd.DataFrame, gt: GroundTruth, coco_ids: dict[str, int], classes: tuple[str, ...]
) -> dict[str, object]:
    peaks = prompts[prompts["source"] == "peak"].reset_index(drop=True)
    hits = _inside_any(peaks, gt, coco_ids)
    top = peaks.groupby(["image_id", "class_id"], sort=False)["score"].idxmax().to_numpy()

    def summary(mask: np.ndarray, h: np.ndarray) -> dict[str, float]:
        n = int(mask.sum())
        return {
            "points": n,
            "hits": int(h[mask].sum()),
            "accuracy": float(h[mask].mean()) if n else float("nan"),
        }

    everything = np.ones(len(peaks), dtype=bool)
    is_top = np.zeros(len(peaks), dtype=bool)
    is_top[top] = True
    # classes the image has a ground-truth box of: where a test image's classes come from the
    # classifier, this separates localisation from classification errors
    c = len(gt.classes)
    present_keys = np.unique(gt.box_image_ids.astype(np.int64) * c + gt.labels)
    peak_keys = peaks["image_id"].map(coco_ids).to_numpy(np.int64) * c + peaks["class_id"].to_numpy(
        np.int64
    )
    present = np.isin(peak_keys, present_keys)
    per_class = {}
    for c, name in enumerate(classes):
        m = (peaks["class_id"] == c).to_numpy()
        per_class[name] = {"all_peaks": summary(m, hits), "top_peak": summary(m & is_top, hits)}
    return {
        "all_peaks": summary(everything, hits),
        "top_peak": summary(is_top, hits),
        "top_peak_present_classes": summary(is_top & present, hits),
        "images": int(prompts["image_id"].nunique()),
        "per_class": per_class,
    }
