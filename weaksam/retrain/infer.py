"""Detections of a retrained detector, with optional test-time augmentation.

One pass at ``test_size`` by default. With ``tta_sizes``, every size (and its mirror when
``tta_flip``) is run, the boxes are mapped back, pooled, and per-class NMS at ``nms`` keeps the
best ``max_per_image`` (detectron2's TTA pools and re-runs NMS the same way). For Mask R-CNN each
kept detection keeps the mask of the pass that produced it (mirrored back with its box); masks
are not averaged across passes.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.models.detection import FasterRCNN
from torchvision.ops import batched_nms

from weaksam.config import RetrainConfig
from weaksam.data.masks import encode_rle


def configure_inference(model: FasterRCNN, cfg: RetrainConfig) -> None:
    model.roi_heads.score_thresh = cfg.score_thresh
    model.roi_heads.nms_thresh = cfg.nms
    model.roi_heads.detections_per_img = cfg.max_per_image
    model.transform.max_size = cfg.test_max_size


@torch.no_grad()
def _pass(model: FasterRCNN, image: torch.Tensor, size: int, flip: bool) -> dict[str, torch.Tensor]:
    model.transform.min_size = (size,)
    x = image.flip(-1) if flip else image
    out: dict[str, torch.Tensor] = {k: v.cpu() for k, v in model([x])[0].items()}
    if flip:
        w = float(image.shape[-1])
        b = out["boxes"]
        out["boxes"] = torch.stack((w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]), dim=1)
        if "masks" in out:
            out["masks"] = out["masks"].flip(-1)
    return out


@torch.no_grad()
def detect(model: FasterRCNN, image: torch.Tensor, cfg: RetrainConfig) -> dict[str, torch.Tensor]:
    """``image`` (3, H, W) RGB in 0..1 on the model's device -> boxes, scores, labels (1-based),
    and ``masks`` (N, 1, H, W) probabilities for Mask R-CNN."""
    model.eval()
    configure_inference(model, cfg)
    if not cfg.tta_sizes:
        return _pass(model, image, cfg.test_size, False)
    model.transform.max_size = cfg.tta_max_size or cfg.test_max_size
    runs = [
        _pass(model, image, s, f)
        for s in cfg.tta_sizes
        for f in ((False, True) if cfg.tta_flip else (False,))
    ]
    boxes = torch.cat([r["boxes"] for r in runs])
    scores = torch.cat([r["scores"] for r in runs])
    labels = torch.cat([r["labels"] for r in runs])
    keep = batched_nms(boxes, scores, labels, cfg.nms)[: cfg.max_per_image]
    out = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    if "masks" in runs[0]:
        out["masks"] = torch.cat([r["masks"] for r in runs])[keep]
    return out


@torch.no_grad()
def detect_batch(
    model: FasterRCNN, images: list[torch.Tensor], cfg: RetrainConfig
) -> list[dict[str, torch.Tensor]]:
    """One pass at ``test_size`` over several images at once (no TTA). torchvision pads the
    batch to a common size, so a detection can differ slightly from the single-image pass."""
    model.eval()
    configure_inference(model, cfg)
    model.transform.min_size = (cfg.test_size,)
    return [{k: v.cpu() for k, v in out.items()} for out in model(images)]


def coco_results(dets: dict[str, torch.Tensor], coco_image_id: int) -> list[dict[str, Any]]:
    """COCO results entries; with masks, an RLE ``segmentation`` (probability > 0.5) each."""
    out = []
    masks = dets.get("masks")
    for k, (b, s, c) in enumerate(
        zip(dets["boxes"].tolist(), dets["scores"].tolist(), dets["labels"].tolist(), strict=True)
    ):
        entry: dict[str, Any] = {
            "image_id": coco_image_id,
            "category_id": int(c),
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "score": float(s),
        }
        if masks is not None:
            entry["segmentation"] = encode_rle((masks[k, 0] > 0.5).numpy())
        out.append(entry)
    return out
