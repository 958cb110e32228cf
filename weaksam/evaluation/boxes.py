"""Box overlap in numpy, with the VOC "+1 pixel" convention as an option."""

from __future__ import annotations

import numpy as np


def _area(boxes: np.ndarray, one: float) -> np.ndarray:
    """Areas of (N, 4) XYXY boxes, (N,); ``one`` is 1 for inclusive pixel indices, else 0."""
    return np.clip(boxes[:, 2] - boxes[:, 0] + one, 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1] + one, 0, None
    )


def box_iou(a: np.ndarray, b: np.ndarray, *, plus_one: bool = False) -> np.ndarray:
    """IoU of every pair of XYXY boxes: (N, 4) x (M, 4) -> (N, M) float64.

    Without ``plus_one`` boxes are continuous (x2/y2 exclusive): width = x2 - x1. With it they
    are inclusive pixel indices as in the VOC devkit: width = x2 - x1 + 1. Degenerate boxes have
    zero area; a pair whose union is zero has IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    area_a, area_b = _area(a, one), _area(b, one)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def box_iou_pairs(a: np.ndarray, b: np.ndarray, *, plus_one: bool = False) -> np.ndarray:
    """IoU of row-aligned XYXY boxes: (N, 4) and (N, 4) -> (N,), conventions as ``box_iou``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    area_a, area_b = _area(a, one), _area(b, one)
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + one
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + one
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def group_pairs(query_keys: np.ndarray, target_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (query, target) index pairs with equal keys, without a Python loop.

    ``target_keys`` must be sorted ascending. Returns (query_index (P,), target_index (P,)),
    grouped by query in query order and, within a query, in target order.
    """
    start = np.searchsorted(target_keys, query_keys, side="left")
    counts = np.searchsorted(target_keys, query_keys, side="right") - start
    query_index = np.repeat(np.arange(len(query_keys)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return query_index, np.repeat(start, counts) + offsets


def best_match(
    query_index: np.ndarray, target_index: np.ndarray, overlaps: np.ndarray, n_queries: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the highest overlap among its pairs and the target giving it (the first such
    target in pair order on a tie). Queries without pairs get overlap -1 and target -1."""
    best = np.full(n_queries, -1.0)
    np.maximum.at(best, query_index, overlaps)
    is_best = overlaps == best[query_index]
    first_query, first_pos = np.unique(query_index[is_best], return_index=True)
    target = np.full(n_queries, -1, dtype=np.int64)
    target[first_query] = target_index[is_best][first_pos]
    return best, target
