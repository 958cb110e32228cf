"""Detections of the transformer retrainers on one image, in the R-CNN detectors' format
(``weaksam.retrain.infer``): boxes XYXY in the image's pixels, scores, 1-based labels and, for
Mask2Former, ``masks`` (N, 1, H, W) probabilities.

DINO: one pass with the shorter side at ``test_size`` (longer side at most ``test_max_size``), or
with ``tta_sizes`` every size (longer side at most ``tta_max_size``) and its mirror when
``tta_flip``, pooled by per-class NMS at ``nms`` to ``max_per_image`` (METHOD.md 10.3). Mask2Former:
one pass (METHOD.md gives it no TTA).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import clip_boxes_to_image

from weaksam.config import DinoConfig, Mask2FormerConfig
from weaksam.detr.train import pad_batch, pad_fill


def _scaled(image: torch.Tensor, size: int, max_size: int) -> tuple[torch.Tensor, float]:
    h, w = image.shape[-2:]
    scale = min(size / min(h, w), max_size / max(h, w))
    out = F.interpolate(
        image[None],
        size=(max(1, round(h * scale)), max(1, round(w * scale))),
        mode="bilinear",
        align_corners=False,
        antialias=scale < 1,
    )[0]
    return out, scale


def _to_image(boxes: torch.Tensor, scale: float, height: int, width: int) -> torch.Tensor:
    return clip_boxes_to_image(boxes / scale, (height, width))


@torch.no_grad()
def dino_pass(
    model: nn.Module, image: torch.Tensor, size: int, max_size: int, flip: bool, top_k: int
) -> dict[str, torch.Tensor]:
    from weaksam.detr.dino import postprocess

    height, width = image.shape[-2:]
    x = image.flip(-1) if flip else image
    x, scale = _scaled(x, size, max_size)
    pixels, canvas = pad_batch([x], pad_fill(model).to(x))
    out = model(pixel_values=pixels)
    dets = postprocess(out.logits[0].cpu(), out.pred_boxes[0].cpu(), canvas, top_k=top_k)
    boxes = _to_image(dets["boxes"], scale, height, width)
    if flip:
        boxes = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1)
    return {**dets, "boxes": boxes}


@torch.no_grad()
def detect_dino(model: nn.Module, image: torch.Tensor, cfg: DinoConfig) -> dict[str, torch.Tensor]:
    """``image`` (3, H, W) RGB in 0..1 on the model's device."""
    from weaksam.detr.dino import pool_passes

    model.eval()
    if cfg.tta_sizes:
        cap = cfg.tta_max_size or cfg.test_max_size
        runs = [
            dino_pass(model, image, s, cap, f, cfg.max_per_image)
            for s in cfg.tta_sizes
            for f in ((False, True) if cfg.tta_flip else (False,))
        ]
        dets = pool_passes(runs, nms=cfg.nms, max_per_image=cfg.max_per_image)
    else:
        dets = dino_pass(model, image, cfg.test_size, cfg.test_max_size, False, cfg.max_per_image)
    keep = dets["scores"] >= cfg.score_thresh
    return {k: v[keep] for k, v in dets.items()}


@torch.no_grad()
def detect_mask2former(
    model: nn.Module, image: torch.Tensor, cfg: Mask2FormerConfig
) -> dict[str, torch.Tensor]:
    """``image`` (3, H, W) RGB in 0..1 on the model's device."""
    from weaksam.detr.mask2former import postprocess

    model.eval()
    height, width = image.shape[-2:]
    x, scale = _scaled(image, cfg.test_size, cfg.test_max_size)
    pixels, canvas = pad_batch([x], pad_fill(model).to(x))
    out = model(pixel_values=pixels)
    dets = postprocess(
        out.class_queries_logits[0].cpu(),
        out.masks_queries_logits[0].cpu(),
        canvas,
        top_k=cfg.max_per_image,
    )
    h, w = x.shape[-2:]
    masks = dets["masks"][:, :, :h, :w]
    if len(masks):
        masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
    else:
        masks = masks.new_zeros((0, 1, height, width))
    out_dets = {
        "boxes": _to_image(dets["boxes"], scale, height, width),
        "scores": dets["scores"],
        "labels": dets["labels"],
        "masks": masks,
    }
    keep = out_dets["scores"] >= cfg.score_thresh
    return {k: v[keep] for k, v in out_dets.items()}
