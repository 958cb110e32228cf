"""Stage B: peak points of a class activation map, and the spatial grid of prompts.

``peak_points`` follows METHOD.md section 3 exactly:

1. local maxima: pixels equal to the k x k max-pool of the map (stride 1, padding (k - 1) / 2);
2. the ``top_k`` (25) highest candidates, descending (ties: lower row-major index first);
3. walk them in order, keeping a point only if its L1 distance to every kept point is at least
   (k - 1) / 2;
4. walk the kept points in order and stop at the first whose value is below ``threshold`` (0.90).

A map normalised to max 1 always yields at least one point; an all-zero map yields none.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def local_maxima(cam: torch.Tensor, kernel: int) -> torch.Tensor:
    """(H, W) float map -> (H, W) bool: pixels equal to their k x k neighbourhood maximum."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"peak kernel must be odd and positive, got {kernel}")
    pooled = F.max_pool2d(cam[None, None], kernel, stride=1, padding=(kernel - 1) // 2)[0, 0]
    return cam == pooled


def peak_points(
    cam: torch.Tensor | np.ndarray, *, kernel: int = 17, top_k: int = 25, threshold: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one normalised (H, W) map.

    Returns (points (N, 2) int64 as (x, y) = (column, row), scores (N,) float32), descending.
    """
    m = torch.as_tensor(cam, dtype=torch.float32)
    if m.ndim != 2:
        raise ValueError(f"peak_points expects an (H, W) map, got shape {tuple(m.shape)}")
    flat = m.flatten()
    cand = torch.nonzero((local_maxima(m, kernel) & (m > 0)).flatten()).flatten()  # (K,)
    # Descending value; a stable sort keeps row-major order among equal values.
    order = torch.sort(flat[cand], descending=True, stable=True).indices[:top_k]
    cand = cand[order]
    rows, cols = cand // m.shape[1], cand % m.shape[1]
    min_dist = (kernel - 1) / 2
    kept: list[int] = []
    for i in range(len(cand)):  # at most top_k (25) candidates
        d = (rows[kept] - rows[i]).abs() + (cols[kept] - cols[i]).abs()
        if bool((d >= min_dist).all()):
            kept.append(i)
    idx = torch.tensor(kept, dtype=torch.long)
    values = flat[cand[idx]]
    n = int((values >= threshold).long().cumprod(0).sum())  # stop at the first value below
    points = torch.stack([cols[idx][:n], rows[idx][:n]], dim=1).numpy().astype(np.int64)
    return points.reshape(-1, 2), values[:n].numpy().astype(np.float32)


def grid_points(width: int, height: int, points_per_side: int) -> np.ndarray:
    """Cell centres of an n x n grid over the image, (n * n, 2) float32 (x, y) in pixels,
    row by row, as SAM's ``build_point_grid`` (offset 1 / 2n) scaled to the image."""
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
    centres = (np.arange(points_per_side) + 0.5) / points_per_side
    xs, ys = np.meshgrid(centres * width, centres * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
