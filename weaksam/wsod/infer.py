"""WSOD inference (METHOD.md sections 7.1 "Inference" and 8).

For every pass of the test-time augmentation (each shorter side of ``test_scales``, with and
without a horizontal flip when ``test_flip``), each proposal gets a score per class and, for MIST,
a regressed box per class, mapped back to the original image. Scores and boxes are averaged over
the passes; then score > ``test_score_thresh``, per-class NMS at ``test_nms`` and the best
``max_per_image`` detections of the image across classes.

Scores per head: WSDDN phi; OICR the mean of the refinement softmaxes without background; MIST
the same, with boxes decoded from the mean of the refinement regressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, clip_boxes_to_image

from weaksam.config import WsodConfig
from weaksam.wsod.boxes import decode, hflip_boxes, resize_boxes
from weaksam.wsod.data import transform
from weaksam.wsod.model import WsodNet, WsodOutput


@dataclass(frozen=True)
class ImageDetections:
    boxes: np.ndarray  # (D, 4) float32 XYXY in original pixels
    scores: np.ndarray  # (D,) float32
    labels: np.ndarray  # (D,) int64, 0-based class


def pass_scores(
    model: WsodNet, out: WsodOutput, rois: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-proposal class scores (R, K) and boxes (R, K, 4) of one pass, in the pass's pixels."""
    k = model.num_classes
    if model.head == "wsddn":
        return out.wsddn_scores().float(), rois[:, None, :].expand(-1, k, -1)
    probs = torch.stack([F.softmax(r.float(), dim=1) for r in out.refine]).mean(dim=0)
    if model.head == "oicr":
        return probs[:, 1:], rois[:, None, :].expand(-1, k, -1)
    deltas = torch.stack([b.float() for b in out.bbox]).mean(dim=0).view(-1, k + 1, 4)
    return probs[:, 1:], decode(deltas[:, 1:], rois)


def passes(cfg: WsodConfig) -> list[tuple[int, bool]]:
    flips = (False, True) if cfg.test_flip else (False,)
    return [(s, f) for s in cfg.test_scales for f in flips]


@torch.no_grad()
def tta_scores(
    model: WsodNet, image: torch.Tensor, rois: torch.Tensor, cfg: WsodConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Averaged (R, K) scores and (R, K, 4) boxes in the original image's pixels. Each pass's
    boxes are clipped to its own image before they are mapped back and averaged (wetectron's
    post-processor clips every pass; clipping the average instead moves a box that one pass
    regresses out of the image)."""
    model.eval()
    device = next(model.parameters()).device
    score_sum = torch.zeros(rois.shape[0], model.num_classes)
    box_sum = torch.zeros(rois.shape[0], model.num_classes, 4)
    runs = passes(cfg)
    for short, flip in runs:
        x, r, (sx, sy) = transform(image, rois, short, cfg.max_side, flip)
        out = model(x[None].to(device), r.to(device))
        scores, boxes = pass_scores(model, out, r.to(device))
        boxes = clip_boxes_to_image(boxes.float().cpu(), (x.shape[-2], x.shape[-1]))
        if flip:
            boxes = hflip_boxes(boxes, float(x.shape[-1]))
        score_sum += scores.float().cpu()
        box_sum += resize_boxes(boxes, 1.0 / sx, 1.0 / sy)
    return score_sum / len(runs), box_sum / len(runs)


def postprocess(scores: torch.Tensor, boxes: torch.Tensor, cfg: WsodConfig) -> ImageDetections:
    """score > threshold, per-class NMS, the top ``max_per_image`` across classes."""
    r, k = scores.shape
    labels = torch.arange(k).expand(r, k).reshape(-1)
    flat_scores, flat_boxes = scores.reshape(-1), boxes.reshape(-1, 4)
    keep = flat_scores > cfg.test_score_thresh
    flat_scores, flat_boxes, labels = flat_scores[keep], flat_boxes[keep], labels[keep]
    # Boxes clipped to no area are dropped (wetectron keeps them): such a box overlaps nothing, so
    # it suppresses nothing in the NMS and can only take a place among max_per_image and count as
    # a false positive.
    nonempty = (flat_boxes[:, 2] > flat_boxes[:, 0]) & (flat_boxes[:, 3] > flat_boxes[:, 1])
    flat_scores, flat_boxes, labels = flat_scores[nonempty], flat_boxes[nonempty], labels[nonempty]
    kept = batched_nms(flat_boxes, flat_scores, labels, cfg.test_nms)[: cfg.max_per_image]
    return ImageDetections(
        boxes=flat_boxes[kept].numpy().astype(np.float32),
        scores=flat_scores[kept].numpy().astype(np.float32),
        labels=labels[kept].numpy().astype(np.int64),
    )


def detect(
    model: WsodNet, image: torch.Tensor, rois: torch.Tensor, cfg: WsodConfig
) -> ImageDetections:
    scores, boxes = tta_scores(model, image, rois, cfg)
    return postprocess(scores, boxes, cfg)


def coco_results(dets: ImageDetections, coco_image_id: int) -> list[dict[str, Any]]:
    """COCO results entries (``category_id`` = class + 1, ``bbox`` = [x, y, w, h])."""
    return [
        {
            "image_id": coco_image_id,
            "category_id": int(c) + 1,
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
            "score": float(s),
        }
        for b, s, c in zip(dets.boxes, dets.scores, dets.labels, strict=True)
    ]
