"""Adaptive pseudo ground truth (METHOD.md section 9, steps 1-5), one image at a time.

1. Class filter: detections of classes outside the image's labels are dropped.
2. Per-image, per-class normalisation: s' = s / (hi_c - lo_c + 1e-8), hi_c and lo_c the largest
   and smallest score of class c in the image. As the public code, lo_c is *not* subtracted from
   s (``subtract_min=True`` does, for the clean variant: s' = (s - lo_c) / (hi_c - lo_c + 1e-8)).
3. Keep: the best detection of each class always; any other when s' >= ``t_keep``.
4. Containment: of two kept boxes i != j of the same class, i is dropped when
   area(i & j) / area(i) >= ``t_con`` (both are dropped when each contains the other).
5. No cap per class or image.

``mode="top1"`` keeps only the best detection per labelled class (the vanilla PGT, which the public
VOC path runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["adaptive", "top1"]


@dataclass(frozen=True)
class PgtParams:
    mode: Mode = "adaptive"
    t_keep: float = 0.5
    t_con: float = 0.85
    subtract_min: bool = False


def containment(boxes: np.ndarray) -> np.ndarray:
    """(N, N): area(i & j) / area(i) for XYXY edge boxes (0 where box i is empty)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area[:, None] > 0, inter / area[:, None], 0.0)


def adaptive_pgt(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    image_labels: list[int] | np.ndarray,
    params: PgtParams,
) -> np.ndarray:
    """Indices of one image's detections kept as pseudo ground truth, best first.

    ``boxes`` (D, 4) XYXY, ``scores`` (D,), ``classes`` (D,) 0-based; ``image_labels`` the
    image's class ids. A class's "first" detection is its highest-scoring one (the lowest index
    on a tie)."""
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    order = order[np.isin(classes[order], np.asarray(image_labels, dtype=np.int64))]  # step 1
    if order.size == 0:
        return order
    cls = classes[order]
    s = scores[order]
    _, first_idx, inverse = np.unique(cls, return_index=True, return_inverse=True)
    is_first = np.zeros(order.size, dtype=bool)
    is_first[first_idx] = True
    if params.mode == "top1":
        return order[is_first]
    hi = np.full(first_idx.size, -np.inf)
    lo = np.full(first_idx.size, np.inf)
    np.maximum.at(hi, inverse, s)
    np.minimum.at(lo, inverse, s)
    numerator = s - lo[inverse] if params.subtract_min else s
    normalised = numerator / (hi[inverse] - lo[inverse] + 1e-8)  # step 2
    keep = is_first | (normalised >= params.t_keep)  # step 3
    kept, kept_cls = order[keep], cls[keep]
    inside = containment(boxes[kept]) >= params.t_con  # step 4
    same = kept_cls[:, None] == kept_cls[None, :]
    np.fill_diagonal(same, False)
    dropped = (inside & same).any(axis=1)
    return kept[~dropped]
