"""Selective Search proposals (OpenCV contrib ``ximgproc``), for comparison with WeakSAM's.

Run on the image resized so its longer side is at most ``max_side`` (the usual practice: the
"fast" mode costs seconds per image at VOC size); boxes are scaled back to original pixels.
Scores rank the boxes in OpenCV's output order: 1 - i / N.

That order is the paper's randomised rank (hierarchy level times a random number), which OpenCV
draws with C's ``rand()``: the generator is seeded for every image, so an image's boxes depend on
the image alone, not on the images its process handled before (shards, resumed runs).
"""

from __future__ import annotations

import ctypes

import cv2
import numpy as np

from weaksam.proposals.store import SOURCES, ImageProposals

# the C library of this process (OpenCV calls its rand())
_C_LIBRARY = ctypes.CDLL(None)
RANK_SEED = 0


def selective_search(
    image: np.ndarray, *, max_boxes: int, max_side: int = 500, mode: str = "fast"
) -> ImageProposals:
    """(H, W, 3) uint8 RGB -> up to ``max_boxes`` XYXY boxes (x2 exclusive) in original pixels."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = (
        cv2.resize(
            image,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
        if scale < 1
        else image
    )
    _C_LIBRARY.srand(RANK_SEED)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    rects = np.asarray(ss.process(), dtype=np.float32).reshape(-1, 4)[
        :max_boxes
    ]  # (N, 4) x, y, w, h
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / scale
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    n = len(boxes)
    scores = (1.0 - np.arange(n) / max(n, 1)).astype(np.float32)
    return ImageProposals(boxes, scores, np.full(n, SOURCES["selective_search"], np.uint8), 0)
