"""The multi-label classifier with a CAM head (Stage A, METHOD.md mapping).

A 1x1 convolution maps backbone features to C class activation maps; global average pooling of
those maps gives the logits. Since both are linear, the logits equal the head applied to the
pooled features, so the CAMs are exactly what the classification loss trains.
"""

from __future__ import annotations

import torch
from torch import nn

from weaksam.models.backbones import Backbone


class CamClassifier(nn.Module):
    """(B, 3, H, W) RGB in [0, 255] -> logits (B, C); ``cams`` gives the (B, C, h, w) maps."""

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        dropout: float = 0.0,
        neck_channels: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout2d(dropout)
        channels = backbone.channels
        self.neck: nn.Module = nn.Identity()
        if neck_channels:
            self.neck = nn.Sequential(
                nn.Conv2d(channels, neck_channels, kernel_size=3, padding=1), nn.ReLU()
            )
            channels = neck_channels
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.head.weight, std=0.01)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)
        self.num_classes = num_classes

    def cams(self, images: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps (B, C, h, w), before ReLU."""
        features = self.neck(self.dropout(self.backbone(images)))  # (B, F, h, w)
        out: torch.Tensor = self.head(features)  # (B, C, h, w)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.cams(images).mean(dim=(2, 3))  # (B, C)
