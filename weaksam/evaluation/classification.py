"""Image-level multi-label classification: average precision per class and its mean."""

from __future__ import annotations

import math

import numpy as np


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class: the mean, over positive images, of the precision at the
    rank where each is retrieved (scores descending; ties broken by input order). NaN without
    positives."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.nonzero(hits)[0] + 1)
    return float(precision_at_hit.mean())


def multilabel_map(
    scores: np.ndarray, labels: np.ndarray, classes: list[str] | tuple[str, ...]
) -> dict[str, object]:
    """Per-class AP and mean over classes with positives. ``scores``/``labels``: (N, C)."""
    per_class = {
        name: average_precision(scores[:, c], labels[:, c]) for c, name in enumerate(classes)
    }
    finite = [v for v in per_class.values() if not math.isnan(v)]
    return {
        "map": float(np.mean(finite)) if finite else float("nan"),
        "per_class": per_class,
        "num_images": len(scores),
    }
