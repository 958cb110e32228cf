"""Load-time proposal filters (METHOD.md: dedup, clip, minimum side; and, off by default, a
maximum share of the image), vectorised."""

from __future__ import annotations

import numpy as np


def filter_proposals(
    boxes: np.ndarray,
    scores: np.ndarray,
    source: np.ndarray,
    *,
    width: int,
    height: int,
    min_side: float,
    max_area_fraction: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip XYXY boxes (N, 4) to the image, drop those with a side < ``min_side`` (and empty
    ones) and, when ``max_area_fraction`` is set, those covering more than that share of the
    image's area, then drop exact duplicates keeping the first. Order is kept. Returns the
    filtered (boxes, scores, source).

    The area cap is not in METHOD.md (whose proposals keep every box): a CPU-config option for
    data whose objects are known to be small, where SAM's background masks give boxes around
    the whole image that multiple-instance training then prefers (README, Stages)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    clipped = np.clip(b, 0, [width, height, width, height]).astype(np.float32)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (w >= max(min_side, 1e-6)) & (h >= max(min_side, 1e-6))
    if max_area_fraction is not None:
        keep &= w * h <= max_area_fraction * float(width) * float(height)
    idx = np.nonzero(keep)[0]
    _, first = np.unique(clipped[idx], axis=0, return_index=True)
    idx = idx[np.sort(first)]
    return clipped[idx], np.asarray(scores)[idx], np.asarray(source)[idx]
