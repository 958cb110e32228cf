"""Image <-> tensor helpers shared by the CAM stages."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
