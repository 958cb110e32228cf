"""WSOD inputs: one image with its proposals and image labels, rescaled and flipped together.

Training draws, per image, a shorter side from ``train_scales`` (the longer side capped at
``max_side``), a horizontal flip with probability 1/2 and PCA lighting noise (METHOD.md 7.1);
every draw comes from a generator seeded by (seed, step, position in the batch), so a resumed or
multi-process run sees exactly the images an uninterrupted single-process run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from weaksam.cam.imaging import to_tensor
from weaksam.config import WsodConfig
from weaksam.data.images import load_rgb
from weaksam.proposals.store import ProposalReader
from weaksam.wsod.boxes import hflip_boxes, resize_boxes

# ImageNet RGB PCA (the "lighting" augmentation of fb.resnet.torch / wetectron), on 0..1 pixels.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclass
class WsodImage:
    image_id: str
    image: torch.Tensor  # (3, H, W) float RGB 0..255 (after any resize / flip)
    rois: torch.Tensor  # (R, 4) float32 XYXY in the pixels of ``image``
    labels: torch.Tensor  # (K,) float multi-hot
    scale: tuple[float, float]  # (sx, sy): resized / original
    flipped: bool
    width: int  # original width and height
    height: int


def target_size(h: int, w: int, short: int, max_side: int) -> tuple[int, int]:
    """(new_h, new_w) with the shorter side ``short`` unless the longer would pass ``max_side``."""
    factor = short / min(h, w)
    if max(h, w) * factor > max_side:
        factor = max_side / max(h, w)
    return max(1, round(h * factor)), max(1, round(w * factor))


def transform(
    image: torch.Tensor, rois: torch.Tensor, short: int, max_side: int, flip: bool
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Resize ``image`` (3, H, W) so its shorter side is ``short``, flip it if asked, and move
    ``rois`` along. Returns the image, the rois and (sx, sy)."""
    _, h, w = image.shape
    nh, nw = target_size(h, w, short, max_side)
    x = image
    if (nh, nw) != (h, w):
        x = F.interpolate(
            image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
        )[0]
    sx, sy = nw / w, nh / h
    r = resize_boxes(rois, sx, sy)
    if flip:
        x = x.flip(-1)
        r = hflip_boxes(r, float(nw))
    return x, r, (sx, sy)


def pca_lighting(image: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Add alpha-weighted ImageNet RGB principal components, alpha ~ N(0, std)."""
    if std <= 0:
        return image
    alpha = torch.randn(3, generator=gen) * std
    rgb = torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))  # (3,) on 0..1
    return (image + 255.0 * rgb.view(3, 1, 1)).clamp(0, 255)


class ProposalSource:
    """Opens the proposal store lazily, once per process (safe with DataLoader workers)."""

    def __init__(
        self,
        path: str | Path,
        *,
        digest: str | None,
        min_side: float,
        max_proposals: int | None,
        max_area_fraction: float | None = None,
    ) -> None:
        self.path, self.digest, self.min_side = Path(path), digest, min_side
        self.max_proposals, self.max_area_fraction = max_proposals, max_area_fraction
        self._reader: ProposalReader | None = None

    def boxes(self, image_id: str, width: int, height: int) -> np.ndarray:
        if self._reader is None:
            self._reader = ProposalReader(
                self.path,
                config_digest=self.digest,
                min_side=self.min_side,
                max_area_fraction=self.max_area_fraction,
            )
        loaded = self._reader.require_nonempty(image_id, width, height)
        return cap_proposals(loaded.boxes, loaded.scores, self.max_proposals)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_reader"] = None  # h5py handles do not cross process boundaries
        return state


def cap_proposals(boxes: np.ndarray, scores: np.ndarray, limit: int | None) -> np.ndarray:
    """The ``limit`` highest-scoring boxes (SAM's predicted IoU; ties in store order), kept in
    store order; all of them when ``limit`` is None. Store order puts the grid's boxes before
    the CAM peaks', so the first N would drop the peaks' first."""
    if not limit or len(boxes) <= limit:
        return boxes
    keep = np.sort(np.argsort(-scores, kind="stable")[:limit])
    return boxes[keep]


def load_image(
    row: pd.Series | tuple[object, ...],
    proposals: ProposalSource,
    num_classes: int,
) -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    image_id = str(row.image_id)  # type: ignore[union-attr]
    width, height = int(row.width), int(row.height)  # type: ignore[union-attr]
    image = to_tensor(load_rgb(Path(str(row.path))))  # type: ignore[union-attr]
    rois = torch.from_numpy(proposals.boxes(image_id, width, height).astype(np.float32))
    labels = torch.zeros(num_classes)
    labels[list(row.labels)] = 1.0  # type: ignore[union-attr]
    return image_id, image, rois, labels, width, height


def training_image(
    row: pd.Series | tuple[object, ...],
    proposals: ProposalSource,
    num_classes: int,
    cfg: WsodConfig,
    gen: torch.Generator,
) -> WsodImage:
    image_id, image, rois, labels, width, height = load_image(row, proposals, num_classes)
    short = cfg.train_scales[int(torch.randint(len(cfg.train_scales), (), generator=gen))]
    flip = cfg.flip and float(torch.rand((), generator=gen)) < 0.5
    x, r, scale = transform(image, rois, short, cfg.max_side, flip)
    x = pca_lighting(x, cfg.pca_lighting, gen)
    return WsodImage(image_id, x, r, labels, scale, flip, width, height)
