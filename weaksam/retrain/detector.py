"""torchvision Faster / Mask R-CNN builders whose box head applies RoI drop (METHOD.md 10).

- ``r50_fpn``: torchvision's ResNet-50-FPN detector (the paper configs), backbone weights from a
  user-supplied torchvision ResNet-50 file, the first stage and BatchNorm frozen.
- ``efficientnet_lite0``: the embedded config; EfficientNet-Lite0 features (stride 16) reduced
  to 256 channels by a 1x1 convolution, one feature level, anchors of 4 sizes x 3 ratios.

``DropRoIHeads`` keeps torchvision's ``RoIHeads`` (sampling, pooling, heads, inference, mask
branch) and replaces only the box-head losses by ``box_head_losses``: the sampled labels and
targets are taken from ``select_training_samples`` and the head's outputs from a forward hook,
so the state dict stays torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from weaksam.config import DetectorSizesConfig
from weaksam.models.backbones import (
    efficientnet_lite0,
    freeze_batchnorm,
    load_torchvision_weights,
)
from weaksam.models.roi_align import SeparableRoIAlign
from weaksam.retrain.roi_drop import box_head_losses


@dataclass(frozen=True)
class RoiDropParams:
    enabled: bool = True
    start_iter: int = 2000
    thresh_cls: float = 4.0
    thresh_reg: float = 4.0
    beta: float = 0.0  # box loss: L1 (detectron2's SMOOTH_L1_BETA 0)


class DropRoIHeads(RoIHeads):
    """``RoIHeads`` with RoI drop in the box-head losses. The trainer sets ``iteration``; the
    number of RoIs dropped and of foreground RoIs in the last forward are in ``last_dropped`` and
    ``last_foreground``."""

    def __init__(self, *args: Any, drop: RoiDropParams, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop = drop
        self.iteration = 0
        self.last_dropped = 0
        self.last_foreground = 0
        self._sampled: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._predicted: tuple[torch.Tensor, torch.Tensor] | None = None
        self.box_predictor.register_forward_hook(self._keep_prediction)

    @classmethod
    def replacing(cls, heads: RoIHeads, drop: RoiDropParams) -> DropRoIHeads:
        """The same heads (same modules and settings) with RoI drop."""
        return cls(
            heads.box_roi_pool,
            heads.box_head,
            heads.box_predictor,
            heads.proposal_matcher.high_threshold,
            heads.proposal_matcher.low_threshold,
            heads.fg_bg_sampler.batch_size_per_image,
            heads.fg_bg_sampler.positive_fraction,
            heads.box_coder.weights,
            heads.score_thresh,
            heads.nms_thresh,
            heads.detections_per_img,
            mask_roi_pool=heads.mask_roi_pool,
            mask_head=heads.mask_head,
            mask_predictor=heads.mask_predictor,
            drop=drop,
        )

    def _keep_prediction(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        if self.training:
            self._predicted = output

    def select_training_samples(
        self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        out = super().select_training_samples(proposals, targets)
        self._sampled = (out[2], out[3])
        return out

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if not self.training:
            return result, losses
        assert self._sampled is not None and self._predicted is not None
        labels, regression_targets = self._sampled
        class_logits, box_regression = self._predicted
        out = box_head_losses(
            class_logits.float(),
            box_regression.float(),
            torch.cat(labels),
            torch.cat(regression_targets),
            active=self.drop.enabled and self.iteration >= self.drop.start_iter,
            thresh_cls=self.drop.thresh_cls,
            thresh_reg=self.drop.thresh_reg,
            beta=self.drop.beta,
        )
        losses["loss_classifier"] = out.loss_classifier
        losses["loss_box_reg"] = out.loss_box_reg
        self.last_dropped, self.last_foreground = out.dropped, out.foreground
        self._sampled = self._predicted = None
        return result, losses


class _SingleLevel(nn.Module):
    """EfficientNet-Lite0 features -> 1x1 conv to ``out_channels``, as torchvision's one-level
    backbone contract (an ordered dict with key "0" and an ``out_channels`` attribute)."""

    def __init__(self, weights: str | Path | None, pretrained: bool, out_channels: int) -> None:
        super().__init__()
        self.body = efficientnet_lite0(weights, pretrained=pretrained, output_stride=16)
        freeze_batchnorm(self.body)
        self.reduce = nn.Conv2d(self.body.channels, out_channels, 1)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """``x``: RGB in 0..255 (the detector's transform is set to produce that)."""
        return OrderedDict([("0", self.reduce(self.body(x)))])


def build_detector(
    backbone: str,
    num_classes: int,
    *,
    masks: bool,
    drop: RoiDropParams,
    weights: str | Path | None = None,
    pretrained: bool = True,
    min_size: int | tuple[int, ...] = 800,
    max_size: int = 1333,
    sizes: DetectorSizesConfig | None = None,
) -> FasterRCNN:
    """Faster R-CNN (``masks=False``) or Mask R-CNN with ``num_classes`` foreground classes and
    RoI drop in the box head. Images go in as float RGB in 0..1 (torchvision's convention).
    ``sizes`` defaults to torchvision's RPN and head sizes."""
    sizes = sizes or DetectorSizesConfig()
    common: dict[str, Any] = {
        "min_size": min_size,
        "max_size": max_size,
        "rpn_pre_nms_top_n_train": max(2000, sizes.rpn_post_nms_train),
        "rpn_post_nms_top_n_train": sizes.rpn_post_nms_train,
        "rpn_pre_nms_top_n_test": max(1000, sizes.rpn_post_nms_test),
        "rpn_post_nms_top_n_test": sizes.rpn_post_nms_test,
        "box_batch_size_per_image": sizes.rois_per_image,
    }
    if backbone == "r50_fpn":
        body = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
        if pretrained:
            if weights is None:
                raise ValueError("r50_fpn: set assets.resnet50 to a torchvision ResNet-50 file")
            load_torchvision_weights(body.body, weights, what="ResNet-50 weights", prefix="layer")
        feature_net: nn.Module = body
        box_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        mask_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=14, sampling_ratio=2)
        # torchvision's FPN defaults: 5 levels with one anchor size each
        anchors = AnchorGenerator(
            sizes=((32,), (64,), (128,), (256,), (512,)),
            aspect_ratios=((0.5, 1.0, 2.0),) * 5,
        )
        extra: dict[str, Any] = {}
    elif backbone == "efficientnet_lite0":
        feature_net = _SingleLevel(weights, pretrained, 256)
        anchors = AnchorGenerator(sizes=((32, 64, 128, 256),), aspect_ratios=((0.5, 1.0, 2.0),))
        # torchvision's pooling, computed as matrix products on CPU (same values, 4-6x faster
        # forward + backward on this one small map: weaksam/models/roi_align.py)
        box_pool = SeparableRoIAlign(["0"], output_size=7, sampling_ratio=2)
        mask_pool = SeparableRoIAlign(["0"], output_size=14, sampling_ratio=2)
        # the backbone normalises 0..255 input itself: make torchvision's transform an identity
        # on 0..1 input scaled back to 0..255
        extra = {"image_mean": [0.0, 0.0, 0.0], "image_std": [1 / 255.0] * 3}
    else:
        raise ValueError(
            f"unknown detector backbone {backbone!r}; use r50_fpn or efficientnet_lite0"
        )
    channels = int(feature_net.out_channels)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {
        **common,
        **extra,
        "rpn_anchor_generator": anchors,
        "box_roi_pool": box_pool,
        "box_head": TwoMLPHead(channels * 7 * 7, sizes.box_head_dim),
        "box_predictor": FastRCNNPredictor(sizes.box_head_dim, num_classes + 1),
    }
    if masks:
        width = sizes.mask_head_channels
        kwargs["mask_roi_pool"] = mask_pool
        kwargs["mask_head"] = MaskRCNNHeads(channels, [width] * sizes.mask_head_layers, 1)
        kwargs["mask_predictor"] = MaskRCNNPredictor(width, width, num_classes + 1)
        model: FasterRCNN = MaskRCNN(feature_net, num_classes=None, **kwargs)
    else:
        model = FasterRCNN(feature_net, num_classes=None, **kwargs)
    model.roi_heads = DropRoIHeads.replacing(model.roi_heads, drop)
    return model
