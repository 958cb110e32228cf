"""Mask2Former (METHOD.md 11) from ``transformers``, on weaksam's backbone.

``transformers``' implementation is detectron2's: a multi-scale deformable-attention pixel
decoder (pure PyTorch), masked-attention transformer decoder, 100 queries, Hungarian matching on
sampled points, losses class 2 / mask 5 / dice 5 with no-object weight 0.1 on the last layer and
every auxiliary layer. The backbone is weaksam's (``weaksam.detr.backbone``): torchvision
ResNet-50 from ``assets.resnet50`` (BatchNorm and the first stage frozen, as detectron2's R50
config; the stem and first stage train too, detectron2's ``FREEZE_AT: 0``) or EfficientNet-Lite0,
levels at strides 4, 8, 16, 32.

Instance inference follows Mask2Former's ``instance_inference``: every (query, class) pair is a
candidate scored by its class probability; the best ``max_per_image`` are kept, each with its
query's mask (logit > 0) and a score multiplied by the mean mask probability inside the mask.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F
from transformers import Mask2FormerConfig as HFMask2FormerConfig
from transformers import Mask2FormerForUniversalSegmentation, ResNetConfig

from weaksam.config import Mask2FormerConfig
from weaksam.detr.backbone import MultiScaleBackbone, build_levels

BACKBONE_STRIDES = (4, 8, 16, 32)


def mask2former_config(
    cfg: Mask2FormerConfig, num_classes: int, channels: list[int]
) -> HFMask2FormerConfig:
    placeholder = ResNetConfig(  # type: ignore[call-arg]
        embedding_size=8,
        hidden_sizes=list(channels),
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return HFMask2FormerConfig(  # type: ignore[call-arg]
        backbone_config=placeholder,
        num_labels=num_classes,
        feature_size=cfg.hidden_dim,
        mask_feature_size=cfg.hidden_dim,
        hidden_dim=cfg.hidden_dim,
        encoder_feedforward_dim=cfg.ffn_dim // 2,  # detectron2: 1024 in the pixel decoder
        dim_feedforward=cfg.ffn_dim,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        num_queries=cfg.num_queries,
        no_object_weight=cfg.no_object_weight,
        class_weight=cfg.class_weight,
        mask_weight=cfg.mask_weight,
        dice_weight=cfg.dice_weight,
        train_num_points=cfg.train_num_points,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        feature_strides=list(BACKBONE_STRIDES),
        use_auxiliary_loss=True,
    )


def build_mask2former(
    cfg: Mask2FormerConfig,
    num_classes: int,
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
) -> Mask2FormerForUniversalSegmentation:
    """Mask2Former with ``num_classes`` classes (0-based labels) on weaksam's backbone."""
    # detectron2's Mask2Former trains the whole backbone (FREEZE_AT 0), BatchNorm frozen
    backbone = build_levels(
        cfg.backbone, weights, pretrained=pretrained, strides=BACKBONE_STRIDES, frozen_stages=0
    )
    model = Mask2FormerForUniversalSegmentation(
        mask2former_config(cfg, num_classes, backbone.channels)
    )
    model.model.pixel_level_module.encoder = backbone
    return model


def backbone_of(model: Mask2FormerForUniversalSegmentation) -> MultiScaleBackbone:
    backbone = model.model.pixel_level_module.encoder
    assert isinstance(backbone, MultiScaleBackbone)
    return backbone


@torch.no_grad()
def postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    canvas: tuple[int, int],
    *,
    top_k: int,
) -> dict[str, torch.Tensor]:
    """One image's output -> ``top_k`` instances on the input canvas (H, W): boxes XYXY from
    the masks, scores, labels (1-based) and ``masks`` (N, 1, H, W) probabilities.
    ``class_logits`` (Q, K + 1) with the no-object class last, ``mask_logits`` (Q, h, w)."""
    from weaksam.detr.train import boxes_of_masks  # (train imports this module's builder)

    probs = class_logits.float().softmax(-1)[:, :-1]  # (Q, K)
    num_classes = probs.shape[1]
    k = min(top_k, probs.numel())
    scores, index = probs.flatten().topk(k)
    query, label = index // num_classes, index % num_classes
    masks = F.interpolate(
        mask_logits.float()[query][None], size=canvas, mode="bilinear", align_corners=False
    )[0].sigmoid()  # (k, H, W)
    binary = masks > 0.5
    area = binary.flatten(1).sum(1)
    mask_score = (masks * binary).flatten(1).sum(1) / area.clamp(min=1)
    keep = area > 0
    binary, masks = binary[keep], masks[keep]
    return {
        "boxes": boxes_of_masks(binary),
        "scores": (scores * mask_score)[keep],
        "labels": (label + 1)[keep],
        "masks": masks[:, None],
    }
