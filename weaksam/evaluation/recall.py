"""Proposal recall as a function of the number of proposals kept.

Per image, proposals are taken in their stored order (best first) and the first N are matched to
the ground truth one-to-one, greedily by highest IoU (as mmdet's ``_recalls``). Recall at a
threshold is the share of all ground-truth boxes whose matched IoU reaches it. Mean best overlap
(MABO) is the mean over ground-truth boxes of the best IoU with any proposal (not one-to-one).
Unlike the public code, images with no proposals stay in the denominator (their boxes are missed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from weaksam.evaluation.boxes import box_iou


def greedy_matched_iou(overlaps: np.ndarray) -> np.ndarray:
    """One-to-one greedy matching on an (N proposals, G gt) IoU matrix.

    Repeatedly takes the largest remaining entry, gives that IoU to its ground truth, and removes
    its row and column. Returns (G,) matched IoU (0 for ground truth left unmatched).
    """
    ious = np.array(overlaps, dtype=np.float64, copy=True)
    n, g = ious.shape
    matched = np.zeros(g, dtype=np.float64)
    for _ in range(min(n, g)):
        flat = int(ious.argmax())
        i, j = divmod(flat, g)
        if ious[i, j] < 0:
            break
        matched[j] = ious[i, j]
        ious[i, :] = -1.0
        ious[:, j] = -1.0
    return matched


def proposal_recall(
    gt_boxes: Sequence[np.ndarray],
    proposals: Sequence[np.ndarray],
    *,
    n_values: Sequence[int] = (10, 100, 300, 1000),
    iou_thresholds: Sequence[float] = (0.5, 0.7),
    plus_one: bool = False,
) -> dict[str, object]:
    """Recall of per-image ``proposals`` ((P_i, 4) XYXY, best first) against ``gt_boxes``
    ((G_i, 4) XYXY). Returns a JSON-ready dict with recall per threshold for each N and for all
    proposals (``"all"``), MABO, boxes per image and the counts."""
    if len(gt_boxes) != len(proposals):
        raise ValueError(f"{len(gt_boxes)} ground-truth sets but {len(proposals)} proposal sets")
    budgets: list[int | None] = [*sorted(set(n_values)), None]
    matched: list[list[np.ndarray]] = [[] for _ in budgets]
    best: list[np.ndarray] = []
    for gt, props in zip(gt_boxes, proposals, strict=True):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        props = np.asarray(props, dtype=np.float64).reshape(-1, 4)
        if len(gt) == 0:
            continue
        overlaps = box_iou(props, gt, plus_one=plus_one)  # (P, G)
        best.append(overlaps.max(axis=0) if len(props) else np.zeros(len(gt)))
        for b, n in enumerate(budgets):
            matched[b].append(greedy_matched_iou(overlaps[:n]))
    num_gt = int(sum(len(m) for m in best))
    recall: dict[str, list[float]] = {}
    for thr in iou_thresholds:
        recall[f"{thr:g}"] = [
            float((np.concatenate(m) >= thr).sum() / num_gt) if num_gt else float("nan")
            for m in matched
        ]
    counts = [len(np.asarray(p).reshape(-1, 4)) for p in proposals]
    return {
        "n": [*sorted(set(n_values)), "all"],
        "iou_thresholds": [float(t) for t in iou_thresholds],
        "recall": recall,
        "mabo": float(np.concatenate(best).mean()) if num_gt else float("nan"),
        "boxes_per_image": float(np.mean(counts)) if counts else 0.0,
        "num_images": len(proposals),
        "num_gt": num_gt,
    }
