"""WSOD network: backbone -> RoIPool -> two FC layers -> WSDDN streams, refinement branches and
(MIST) class-specific box regression. One image per forward (images differ in size); the
trainer accumulates gradients over the images of a step.

Heads (``head``):
- ``wsddn``: the two-stream MIL alone, K-way (no background), BCE summed over classes.
- ``oicr``: WSDDN (as above) + ``refinements`` (K+1)-way branches trained with OICR pseudo-labels.
- ``mist``: WSDDN with a background column (K+1, BCE averaged), refinements with MIST
  pseudo-labels, and a class-specific box regressor per refinement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_pool

from weaksam.models.backbones import Backbone

Head = Literal["wsddn", "oicr", "mist"]
HEADS: tuple[Head, ...] = ("wsddn", "oicr", "mist")


@dataclass
class WsodOutput:
    cls: torch.Tensor  # (R, C') WSDDN classification stream logits
    det: torch.Tensor  # (R, C') WSDDN detection stream logits
    refine: list[torch.Tensor]  # each (R, K+1) logits
    bbox: list[torch.Tensor]  # each (R, 4 (K+1)) deltas (MIST only, else empty)

    def wsddn_scores(self) -> torch.Tensor:
        """phi = softmax over classes (x) softmax over RoIs, (R, C')."""
        return F.softmax(self.cls, dim=1) * F.softmax(self.det, dim=0)


class ConcreteDropBlock(nn.Module):
    """Concrete DropBlock (METHOD.md 7.1): a generator on the detached pooled features predicts
    per-cell drop probabilities; a hard Gumbel-softmax draws seeds, each seed drops a
    ``block`` x ``block`` block, and the kept features are rescaled by numel / kept."""

    def __init__(
        self, channels: int, *, tau: float, pool_size: int, block: int, temperature: float
    ) -> None:
        super().__init__()
        self.gamma = tau / block**2
        self.block = block
        self.temperature = temperature
        # wetectron's generator: convolutions without bias, Kaiming (fan-out) initialised
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(2),
        )
        self.shortcut = nn.Conv2d(channels, 2, 1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def mask(self, feats: torch.Tensor) -> torch.Tensor:
        """(R, C, s, s) -> (R, 1, s, s) keep-mask in {0, 1}; differentiable in the generator
        (straight-through), not in ``feats``."""
        x = feats.detach()
        logits = self.body(x) + self.shortcut(x)
        p = torch.sigmoid(logits[:, :1]) * self.gamma
        probs = torch.cat((p, 1 - p), dim=1)
        seeds = F.gumbel_softmax(torch.log(probs + 1e-10), tau=self.temperature, hard=True, dim=1)
        return self.keep_from_seeds(seeds[:, :1])

    def keep_from_seeds(self, seeds: torch.Tensor) -> torch.Tensor:
        """(R, 1, s, s) seed map in {0, 1} -> keep-mask: 0 on the ``block`` x ``block`` block of
        each seed (centred on it; for an even block, the seed is the upper-left of the centre
        four cells)."""
        drop = F.max_pool2d(seeds, self.block, stride=1, padding=self.block // 2)
        if self.block % 2 == 0:  # an even window padded by block // 2 gives one row too many
            drop = drop[:, :, :-1, :-1]
        return 1 - drop

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return feats
        keep = self.mask(feats)
        return feats * keep * (keep.numel() / keep.sum().clamp(min=1.0))


class WsodNet(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        head: Head,
        refinements: int = 3,
        roi_channels: int | None = None,
        fc_dim: int = 4096,
        pool_size: int = 7,
        dropout: float = 0.5,
        dropblock: ConcreteDropBlock | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown WSOD head {head!r}; choose from {HEADS}")
        self.backbone = backbone
        self.head: Head = head
        self.num_classes = num_classes
        self.pool_size = pool_size
        channels = backbone.channels
        self.reduce: nn.Module = nn.Identity()
        if roi_channels is not None:
            self.reduce = nn.Sequential(nn.Conv2d(channels, roi_channels, 1), nn.ReLU(inplace=True))
            channels = roi_channels
        self.dropblock = dropblock
        self.fc = nn.Sequential(
            nn.Linear(channels * pool_size * pool_size, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        mil = num_classes + 1 if head == "mist" else num_classes
        self.cls_score = nn.Linear(fc_dim, mil)
        self.det_score = nn.Linear(fc_dim, mil)
        n_ref = refinements if head != "wsddn" else 0
        self.refine = nn.ModuleList(nn.Linear(fc_dim, num_classes + 1) for _ in range(n_ref))
        n_reg = refinements if head == "mist" else 0
        self.bbox_pred = nn.ModuleList(
            nn.Linear(fc_dim, 4 * (num_classes + 1)) for _ in range(n_reg)
        )
        self._init(head)

    def _init(self, head: Head) -> None:
        for m in self.fc:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        std = 0.001 if head == "mist" else 0.01
        for m in [self.cls_score, self.det_score, *self.refine, *self.bbox_pred]:
            assert isinstance(m, nn.Linear)
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor, rois: torch.Tensor) -> WsodOutput:
        """``image`` (1, 3, H, W) RGB in 0..255, ``rois`` (R, 4) XYXY in its pixels."""
        feats = self.reduce(self.backbone(image))
        # RoIPool in fp32 with fp32 boxes: bf16 would round coordinates near 1000 px to 4-8 px.
        boxes = torch.cat((rois.new_zeros(rois.shape[0], 1), rois), dim=1).float()
        pooled = roi_pool(
            feats.float(), boxes, self.pool_size, spatial_scale=1.0 / self.backbone.stride
        )
        if self.dropblock is not None:
            pooled = self.dropblock(pooled)
        x = self.fc(pooled.flatten(1))
        return WsodOutput(
            cls=self.cls_score(x),
            det=self.det_score(x),
            refine=[r(x) for r in self.refine],
            bbox=[b(x) for b in self.bbox_pred],
        )

    def detector_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [
            (n, p)
            for n, p in self.named_parameters()
            if p.requires_grad and not n.startswith("dropblock.")
        ]
