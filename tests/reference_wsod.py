"""Plain-Python references of the OICR and MIST pseudo-label rules, written from METHOD.md with
loops over classes and proposals (the public code's structure). Used by the tests to check the
vectorised rules on random problems, and by bench/bench_wsod.py for the speed ratio."""

from __future__ import annotations

import numpy as np


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _assign(
    boxes: np.ndarray, gts: list[tuple[np.ndarray, int, float]], fg_iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = len(boxes)
    labels, weights, targets = np.zeros(r, np.int64), np.zeros(r), np.zeros((r, 4))
    if not gts:
        return labels, weights, targets
    for i in range(r):
        best, best_j = -1.0, 0
        for j, (g, _, _) in enumerate(gts):
            o = _iou(boxes[i], g)
            if o > best:
                best, best_j = o, j
        g, c, s = gts[best_j]
        labels[i] = c + 1 if best >= fg_iou else 0
        weights[i], targets[i] = s, g
    return labels, weights, targets


def _ranked(scores: np.ndarray) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def reference_mist(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    p: float = 0.15,
    seed_iou: float = 0.2,
    fg_iou: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = len(boxes)
    k = max(1, int(p * r)) if r >= 10 else 1
    gts: list[tuple[np.ndarray, int, float]] = []
    for c in range(scores.shape[1]):
        if not labels[c]:
            continue
        top = _ranked(scores[:, c])[:k]
        for rank, i in enumerate(top):
            if all(_iou(boxes[i], boxes[j]) < seed_iou for j in top[:rank]):
                gts.append((boxes[i], c, float(scores[i, c])))
    return _assign(boxes, gts, fg_iou)


def reference_oicr(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    ratio: float = 0.9,
    nms_iou: float = 0.5,
    fg_iou: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cands: list[tuple[np.ndarray, int, float]] = []
    for c in range(scores.shape[1]):
        if not labels[c]:
            continue
        top = scores[:, c].max()
        for i in range(len(boxes)):
            if scores[i, c] >= ratio * top:
                cands.append((boxes[i], c, float(scores[i, c])))
    order = sorted(range(len(cands)), key=lambda j: (-cands[j][2], j))
    kept: list[tuple[np.ndarray, int, float]] = []
    for j in order:
        if all(_iou(cands[j][0], g[0]) <= nms_iou for g in kept):
            kept.append(cands[j])
    return _assign(boxes, kept, fg_iou)


def reference_greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS over candidates ranked by score, ties by index: keep a box unless a kept
    box overlaps it with IoU > ``iou``."""
    kept: list[int] = []
    for i in _ranked(scores):
        if all(_iou(boxes[i], boxes[j]) <= iou for j in kept):
            kept.append(i)
    return kept
