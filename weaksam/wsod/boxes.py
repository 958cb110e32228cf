"""Box arithmetic for WSOD in torch: regression targets, and moving proposals with the image.

Boxes are XYXY with x2 / y2 exclusive (DESIGN.md section 3), so a box's width is ``x2 - x1``.
METHOD.md's coder adds 1 to widths (inclusive pixel corners); weaksam's boxes are already edges,
so the +1 is dropped here (a documented deviation that changes targets by under one pixel).
"""

from __future__ import annotations

import math

import torch

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SCALE_CLAMP = math.log(1000.0 / 16)


def encode(gt: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Regression targets (dx, dy, dw, dh) of ``gt`` (N, 4) relative to ``rois`` (N, 4)."""
    wx, wy, ww, wh = BOX_WEIGHTS
    pw = (rois[:, 2] - rois[:, 0]).clamp(min=1e-6)
    ph = (rois[:, 3] - rois[:, 1]).clamp(min=1e-6)
    px, py = rois[:, 0] + 0.5 * pw, rois[:, 1] + 0.5 * ph
    gw = (gt[:, 2] - gt[:, 0]).clamp(min=1e-6)
    gh = (gt[:, 3] - gt[:, 1]).clamp(min=1e-6)
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return torch.stack(
        (
            wx * (gx - px) / pw,
            wy * (gy - py) / ph,
            ww * torch.log(gw / pw),
            wh * torch.log(gh / ph),
        ),
        dim=1,
    )


def decode(deltas: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Inverse of ``encode``: ``deltas`` (N, ..., 4) applied to ``rois`` (N, 4); dw and dh are
    clamped at log(1000 / 16)."""
    wx, wy, ww, wh = BOX_WEIGHTS
    shape = (rois.shape[0],) + (1,) * (deltas.dim() - 2)
    pw = (rois[:, 2] - rois[:, 0]).view(shape)
    ph = (rois[:, 3] - rois[:, 1]).view(shape)
    px, py = rois[:, 0].view(shape) + 0.5 * pw, rois[:, 1].view(shape) + 0.5 * ph
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=SCALE_CLAMP)
    dh = (deltas[..., 3] / wh).clamp(max=SCALE_CLAMP)
    cx, cy = px + dx * pw, py + dy * ph
    w, h = pw * torch.exp(dw), ph * torch.exp(dh)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def resize_boxes(boxes: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    return boxes * boxes.new_tensor([sx, sy, sx, sy])


def hflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Mirror XYXY boxes (edges) in an image ``width`` wide: x -> width - x."""
    out = boxes.clone()
    out[..., 0] = width - boxes[..., 2]
    out[..., 2] = width - boxes[..., 0]
    return out
