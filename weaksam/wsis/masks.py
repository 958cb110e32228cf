"""Box-prompted SAM masks for pseudo ground-truth boxes (METHOD.md section 11).

Each box is one prompt; SAM's single-mask output (index 0) is thresholded at logit 0. Options:
``largest_component`` keeps the largest 8-connected component; ``clip_to_box`` clears the pixels
outside the prompt box. A mask that comes out empty is replaced by its filled box (at least the
pixel a box narrower than a pixel touches) and counted, so no pseudo instance is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from weaksam.sam.predictor import PromptableSegmenter


@dataclass(frozen=True)
class BoxMasks:
    masks: np.ndarray  # (N, H, W) bool
    filled: np.ndarray  # (N,) bool: the mask was empty and is its box instead


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (the first on a tie); empty stays empty."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:  # background only, or one component
        return mask.copy()
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.asarray(labels == biggest)


def box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centres lie inside an XYXY edge box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    return (ys[:, None] >= y1) & (ys[:, None] < y2) & (xs[None, :] >= x1) & (xs[None, :] < x2)


def cover_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """``box_mask``, or where the box covers no pixel centre (narrower than a pixel, or on the
    image's edge) the pixels it touches, at least one: a filled mask is never empty."""
    m = box_mask(box, height, width)
    if m.any():
        return m
    x1, y1, x2, y2 = (float(v) for v in box)
    c0 = min(max(int(np.floor(x1)), 0), width - 1)
    r0 = min(max(int(np.floor(y1)), 0), height - 1)
    c1 = min(max(int(np.ceil(x2)), c0 + 1), width)
    r1 = min(max(int(np.ceil(y2)), r0 + 1), height)
    m[r0:r1, c0:c1] = True
    return m


def masks_for_boxes(
    seg: PromptableSegmenter,
    boxes: np.ndarray,
    *,
    largest: bool,
    clip_to_box: bool,
    batch: int = 16,
) -> BoxMasks:
    """Masks of one image (already given to ``seg.set_image``) for its (N, 4) XYXY boxes."""
    h, w = seg.original_size
    n = len(boxes)
    masks = np.zeros((n, h, w), dtype=bool)
    filled = np.zeros(n, dtype=bool)
    clipped = boxes.astype(np.float32).copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    for start in range(0, n, batch):
        b = torch.from_numpy(clipped[start : start + batch])
        low_res = seg.decode(boxes=b).low_res[:, 0]  # the single-mask output
        full = seg.full_masks(low_res).cpu().numpy()
        for k, m in enumerate(full):
            i = start + k
            if clip_to_box:
                m &= box_mask(clipped[i], h, w)
            if largest:
                m = largest_component(m)
            if not m.any():
                m = cover_mask(clipped[i], h, w)
                filled[i] = True
            masks[i] = m
    return BoxMasks(masks, filled)
