"""A DINO-style DETR (METHOD.md 10.3) from ``transformers``' RT-DETR implementation.

``transformers`` (pinned) has no DINO of its own. Its RT-DETR carries DINO's decoder: top-k query
selection from the encoder's output (two-stage), learned content queries with selected anchor
positions (``learn_initial_query``: DINO's mixed query selection), iterative box refinement over
multi-scale deformable attention, and DINO's contrastive denoising groups (label noise, box
noise, dynamic group count from a budget of denoising queries). All of it is pure PyTorch
(``disable_custom_kernels``): nothing is compiled.

Where it differs from mmdetection's DINO-4scale, deliberately or not:

- the encoder is RT-DETR's hybrid encoder (one attention layer on the stride-32 level, then a
  convolutional top-down / bottom-up fusion) instead of six deformable encoder layers;
  ``encoder_layers`` sets the attention layers on the top level;
- the fourth scale (stride 64) comes from a stride-2 convolution on the stride-32 level, as in
  DINO;
- the box refinement detaches each layer's boxes (Deformable DETR) instead of DINO's
  "look forward twice";
- the classification loss is DINO's sigmoid focal loss (alpha 0.25, gamma 2, weight 1) with L1 5
  and GIoU 2 and Hungarian costs 2 / 5 / 2, applied to the last layer, every auxiliary layer,
  the encoder's selected queries and the denoising groups (``DinoCriterion``); RT-DETR's own
  varifocal loss is not used.

The backbone is weaksam's (``weaksam.detr.backbone``): torchvision ResNet-50 from
``assets.resnet50`` or EfficientNet-Lite0, levels at strides 8, 16, 32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, sigmoid_focal_loss
from transformers import ResNetConfig, RTDetrConfig, RTDetrForObjectDetection
from transformers.loss.loss_rt_detr import RTDetrLoss, _set_aux_loss

from weaksam.config import DinoConfig
from weaksam.detr.backbone import MultiScaleBackbone, build_levels

BACKBONE_STRIDES = (8, 16, 32)


class DinoCriterion(RTDetrLoss):
    """RT-DETR's set criterion (matching, denoising groups, auxiliary and encoder outputs) with
    DINO's losses: sigmoid focal classification (weight 1), L1 (5) and GIoU (2)."""

    def __init__(self, config: RTDetrConfig) -> None:
        super().__init__(config)
        self.losses = ["focal", "boxes"]
        self.weight_dict = {
            "loss_focal": 1.0,
            "loss_bbox": config.weight_loss_bbox,
            "loss_giou": config.weight_loss_giou,
        }

    def loss_labels_focal(
        self,
        outputs: dict[str, Any],
        targets: list[dict[str, torch.Tensor]],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
        num_boxes: float,
        log: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Sigmoid focal loss over every (query, class), summed and divided by the number of
        target boxes (DINO's; transformers 5.24's own focal path passes its arguments in the
        wrong order and a one-hot target of integers, so it is replaced here)."""
        logits = outputs["logits"]  # (B, Q, K)
        idx = self._get_source_permutation_idx(indices)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        target_classes[idx] = torch.cat(
            [t["class_labels"][j] for t, (_, j) in zip(targets, indices, strict=True)]
        )
        onehot = F.one_hot(target_classes, self.num_classes + 1)[..., :-1].to(logits.dtype)
        loss = sigmoid_focal_loss(
            logits, onehot, alpha=self.alpha, gamma=self.gamma, reduction="sum"
        )
        return {"loss_focal": loss / num_boxes}


def dino_loss(
    logits: torch.Tensor,
    labels: list[dict[str, torch.Tensor]],
    device: torch.device,
    pred_boxes: torch.Tensor,
    config: RTDetrConfig,
    outputs_class: torch.Tensor,
    outputs_coord: torch.Tensor,
    enc_topk_logits: torch.Tensor | None = None,
    enc_topk_bboxes: torch.Tensor | None = None,
    denoising_meta_values: dict[str, Any] | None = None,
    **_: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The loss ``RTDetrForObjectDetection`` computes when given ``labels``, with
    ``DinoCriterion``, in fp32 outside autocast (the matching costs go to scipy).
    ``outputs_class`` / ``outputs_coord``: (B, layers, queries, ...), the denoising queries
    first when ``denoising_meta_values`` is given."""
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        return _dino_loss(
            logits.float(),
            labels,
            device,
            pred_boxes.float(),
            config,
            outputs_class.float(),
            outputs_coord.float(),
            None if enc_topk_logits is None else enc_topk_logits.float(),
            None if enc_topk_bboxes is None else enc_topk_bboxes.float(),
            denoising_meta_values,
        )


def _dino_loss(
    logits: torch.Tensor,
    labels: list[dict[str, torch.Tensor]],
    device: torch.device,
    pred_boxes: torch.Tensor,
    config: RTDetrConfig,
    outputs_class: torch.Tensor,
    outputs_coord: torch.Tensor,
    enc_topk_logits: torch.Tensor | None,
    enc_topk_bboxes: torch.Tensor | None,
    denoising_meta_values: dict[str, Any] | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    criterion = DinoCriterion(config).to(device)
    split = None if denoising_meta_values is None else denoising_meta_values["dn_num_split"]
    if split is not None:
        logits = torch.split(logits, split, dim=1)[1]
        pred_boxes = torch.split(pred_boxes, split, dim=1)[1]
    outputs: dict[str, Any] = {"logits": logits, "pred_boxes": pred_boxes}
    if split is not None:
        dn_coord, outputs_coord = torch.split(outputs_coord, split, dim=2)
        dn_class, outputs_class = torch.split(outputs_class, split, dim=2)
    aux = _set_aux_loss(
        outputs_class[:, :-1].transpose(0, 1), outputs_coord[:, :-1].transpose(0, 1)
    )
    aux.extend(_set_aux_loss([enc_topk_logits], [enc_topk_bboxes]))
    outputs["auxiliary_outputs"] = aux
    if split is not None:
        outputs["dn_auxiliary_outputs"] = _set_aux_loss(
            dn_class.transpose(0, 1), dn_coord.transpose(0, 1)
        )
        outputs["denoising_meta_values"] = denoising_meta_values
    parts: dict[str, torch.Tensor] = criterion(outputs, labels)
    loss = sum(parts.values())
    assert isinstance(loss, torch.Tensor)
    return loss, parts, aux


def dino_config(cfg: DinoConfig, num_classes: int, channels: list[int]) -> RTDetrConfig:
    """The RT-DETR configuration of weaksam's DINO-style detector."""
    # a placeholder backbone of the right widths: replaced by weaksam's before use
    placeholder = ResNetConfig(  # type: ignore[call-arg]
        embedding_size=8,
        hidden_sizes=[8, *channels],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    return RTDetrConfig(  # type: ignore[call-arg]
        backbone_config=placeholder,
        num_labels=num_classes,
        freeze_backbone_batch_norms=False,
        encoder_in_channels=list(channels),
        feat_strides=list(BACKBONE_STRIDES),
        encoder_hidden_dim=cfg.hidden_dim,
        encoder_layers=cfg.encoder_layers,
        encoder_ffn_dim=cfg.ffn_dim,
        positional_encoding_temperature=cfg.pos_temperature,
        d_model=cfg.hidden_dim,
        decoder_in_channels=[cfg.hidden_dim] * len(BACKBONE_STRIDES),
        num_feature_levels=cfg.num_levels,
        decoder_layers=cfg.decoder_layers,
        decoder_ffn_dim=cfg.ffn_dim,
        num_queries=cfg.num_queries,
        num_denoising=cfg.num_denoising,
        label_noise_ratio=cfg.label_noise,
        box_noise_scale=cfg.box_noise,
        learn_initial_query=True,
        with_box_refine=True,
        disable_custom_kernels=True,
        # DINO's classifier bias prior (mmdetection's bias_init_with_prob(0.01))
        initializer_bias_prior_prob=0.01,
        matcher_class_cost=2.0,
        matcher_bbox_cost=5.0,
        matcher_giou_cost=2.0,
        matcher_alpha=0.25,
        matcher_gamma=2.0,
        use_focal_loss=True,
        focal_loss_alpha=0.25,
        focal_loss_gamma=2.0,
        weight_loss_bbox=5.0,
        weight_loss_giou=2.0,
        auxiliary_loss=True,
    )


def build_dino(
    cfg: DinoConfig,
    num_classes: int,
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
) -> RTDetrForObjectDetection:
    """The detector with ``num_classes`` classes (0-based labels) on weaksam's backbone."""
    backbone = build_levels(
        cfg.backbone, weights, pretrained=pretrained, strides=BACKBONE_STRIDES, frozen_stages=1
    )
    model = RTDetrForObjectDetection(dino_config(cfg, num_classes, backbone.channels))
    model.model.backbone.model = backbone
    # transformers 5.24 initialises every BatchNorm2d of the neck (input projections, hybrid
    # encoder) with scales drawn from N(0, 0.01): the decoder would attend to features ~100x
    # too small. RT-DETR's own code leaves them at PyTorch's 1 and 0.
    for module in model.model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    # transformers 5.24 tiles the content-query nn.Embedding itself (``.tile`` on the module,
    # an AttributeError); RT-DETR's and DINO's code tile its weight: hold it as that weight,
    # (1, queries, d_model), xavier-uniform as both initialise it
    del model.model.weight_embedding
    queries = torch.empty(cfg.num_queries, cfg.hidden_dim)
    nn.init.xavier_uniform_(queries)
    model.model.weight_embedding = nn.Parameter(queries[None])
    model.loss_function = dino_loss
    return model


def backbone_of(model: RTDetrForObjectDetection) -> MultiScaleBackbone:
    backbone = model.model.backbone.model
    assert isinstance(backbone, MultiScaleBackbone)
    return backbone


@torch.no_grad()
def postprocess(
    logits: torch.Tensor, boxes: torch.Tensor, canvas: tuple[int, int], *, top_k: int
) -> dict[str, torch.Tensor]:
    """One image's output -> the ``top_k`` best (query, class) pairs (DINO keeps 300; a query
    may give several classes), boxes XYXY in pixels of the input canvas, labels 1-based.
    ``logits`` (Q, K), ``boxes`` (Q, 4) normalised cx, cy, w, h; ``canvas`` (H, W)."""
    scores = logits.float().sigmoid().flatten()  # (Q * K,)
    k = min(top_k, scores.numel())
    top, index = scores.topk(k)
    num_classes = logits.shape[1]
    query, label = index // num_classes, index % num_classes
    cx, cy, w, h = boxes.float()[query].unbind(-1)
    height, width = canvas
    xyxy = torch.stack(
        ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height),
        dim=-1,
    )
    return {"boxes": xyxy, "scores": top, "labels": label + 1}


def pool_passes(
    runs: list[dict[str, torch.Tensor]], *, nms: float, max_per_image: int
) -> dict[str, torch.Tensor]:
    """Test-time augmentation: the passes' detections pooled, per-class NMS at ``nms``, the best
    ``max_per_image`` kept (mmdetection's DetTTAModel merge for DINO)."""
    boxes = torch.cat([r["boxes"] for r in runs])
    scores = torch.cat([r["scores"] for r in runs])
    labels = torch.cat([r["labels"] for r in runs])
    keep = batched_nms(boxes, scores, labels, nms)[:max_per_image]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def frozen_modules(model: nn.Module) -> list[str]:
    """Names of the parameters that do not train (the frozen backbone stem)."""
    return [n for n, p in model.named_parameters() if not p.requires_grad]
