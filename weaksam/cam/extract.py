"""Stage A inference: multi-scale, flipped CAMs per image (METHOD.md section 2.3).

For each scale (the first, 1.0, defines the output size) the image is resized bicubically (with
antialiasing when it shrinks, as PIL's resize of the reference) and run as is and flipped; each
CAM (ReLU of the head's maps) is interpolated bilinearly to the pixels, each feature cell at the
centre of its receptive field (``Backbone.cell_offset``), then resized to the image size; the
flipped ones are flipped back, and all passes are summed. Only the image's classes are kept:
its labels on the training split, the classifier's predictions (probability of the unflipped
first pass >= ``test_class_threshold``) on evaluation splits, never the ground truth there.
Each kept map is min-max normalised to [0, 1] (eps 1e-8) and stored as float16.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from weaksam.cam import CAM_STORE_KIND
from weaksam.cam.imaging import to_tensor
from weaksam.config import CamConfig
from weaksam.data.images import load_rgb
from weaksam.data.manifest import Manifest
from weaksam.h5store import ShardWriter
from weaksam.logs import progress
from weaksam.models.classifier import CamClassifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageCams:
    cams: np.ndarray  # (K, H, W) float32 in [0, 1], one map per kept class
    class_ids: np.ndarray  # (K,) int64
    scores: np.ndarray  # (C,) float32 classifier probabilities (first pass)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) -> (1, 3, h, w) bicubic, clamped to [0, 255]."""
    if tuple(image.shape[1:]) == size:
        return image[None]
    out = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 255)


def cells_to_pixels(
    raw: torch.Tensor,
    *,
    stride: int,
    offset: float,
    top: int,
    left: int,
    height: int,
    width: int,
) -> torch.Tensor:
    """Bilinear maps (P, C, height, width) at pixel indices ``top ..``, ``left ..`` of the input
    from feature maps (P, C, h, w) whose cell j is centred on pixel ``offset + stride * j``
    (pixels beyond the first or last cell centre take its value)."""
    _, _, h, w = raw.shape

    def axis(start: int, n: int, cells: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two cells each pixel reads and the second one's weight (separable bilinear)."""
        u = ((torch.arange(start, start + n, dtype=torch.float64) - offset) / stride).clamp(
            0, cells - 1
        )
        lo = u.floor().long()
        hi = (lo + 1).clamp(max=cells - 1)
        frac = (u - lo).to(raw.dtype)
        return lo.to(raw.device), hi.to(raw.device), frac.to(raw.device)

    y0, y1, fy = axis(top, height, h)
    x0, x1, fx = axis(left, width, w)
    rows = raw[..., y0, :] * (1 - fy)[:, None] + raw[..., y1, :] * fy[:, None]  # (P, C, height, w)
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def _padded_cams(model: CamClassifier, batch: torch.Tensor, pad: int) -> torch.Tensor:
    """Raw CAMs (P, C, h, w) of a batch at its own pixels. Its borders are extended by reflection
    (``pad`` pixels, so zero "same" padding does not light up the borders), its right and bottom
    sides up to a multiple of the backbone's ``size_multiple``, and each feature cell is placed at
    the centre of its receptive field (``Backbone.cell_offset``), not at the centre of its
    stride x stride patch: for EfficientNet-Lite0 at stride 16 that is 7.5 pixels right and down."""
    backbone = model.backbone
    _, _, h, w = batch.shape
    p = max(0, min(pad, h - 1, w - 1))
    m = backbone.size_multiple
    extra_h, extra_w = -(h + 2 * p) % m, -(w + 2 * p) % m
    pads = (p, p + extra_w, p, p + extra_h)
    if any(pads):
        mode = "reflect" if p + extra_h < h and p + extra_w < w else "replicate"
        batch = F.pad(batch, pads, mode=mode)
    raw = model.cams(batch)  # (P, C, h', w')
    return cells_to_pixels(
        raw,
        stride=backbone.stride,
        offset=backbone.cell_offset,
        top=p,
        left=p,
        height=h,
        width=w,
    )


def min_max_normalise(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per map of (K, H, W): (m - min) / (max - min + eps)."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    return (maps - lo) / (hi - lo + eps)


@torch.no_grad()
def multiscale_cams(
    model: CamClassifier, image: torch.Tensor, cfg: CamConfig, *, labels: list[int] | None
) -> ImageCams:
    """CAMs of one (3, H, W) image in [0, 255]. ``labels`` given: keep those classes (training
    split); None: keep the classes the classifier predicts (evaluation split)."""
    device = next(model.parameters()).device
    image = image.to(device)
    _, h, w = image.shape
    base = min(1.0, cfg.max_side / max(h, w)) if cfg.max_side else 1.0
    total: torch.Tensor | None = None
    keep = torch.tensor([], dtype=torch.long)
    scores = torch.zeros(model.num_classes)
    for i, scale in enumerate(cfg.scales):
        size = (max(1, round(h * base * scale)), max(1, round(w * base * scale)))
        x = _resize(image, size)
        batch = torch.cat([x, x.flip(-1)]) if cfg.flip else x  # (P, 3, h', w')
        raw = _padded_cams(model, batch, cfg.border_pad).float()  # (P, C, h'', w'')
        if i == 0:
            scores = torch.sigmoid(raw[0].mean(dim=(1, 2))).cpu()  # (C,) unflipped first pass
            if labels is not None:
                keep = torch.tensor(sorted(set(labels)), dtype=torch.long)
            else:
                keep = torch.nonzero(scores >= cfg.test_class_threshold).flatten()
            if keep.numel() == 0:
                break
        maps = F.interpolate(
            F.relu(raw[:, keep]), size=(h, w), mode="bilinear", align_corners=False
        )
        if cfg.flip:
            maps[1] = maps[1].flip(-1)  # (P, K, H, W)
        total = maps.sum(0) if total is None else total + maps.sum(0)
    cams = np.zeros((0, h, w), np.float32) if total is None else min_max_normalise(total).numpy()
    return ImageCams(cams, keep.numpy().astype(np.int64), scores.numpy().astype(np.float32))


def extract_cams_shard(
    model: CamClassifier,
    manifest: Manifest,
    split: str,
    cfg: CamConfig,
    *,
    use_labels: bool,
    shard: int,
    shards: int,
    out: Path,
    config_digest: str,
) -> int:
    """Write the CAMs of shard ``shard`` of ``split`` to ``out`` (resumable). Returns images done."""
    frame = manifest.shard(split, shard, shards)
    model.eval()
    attrs = {
        "classes": list(manifest.classes),
        "split": split,
        "labels_from": "labels" if use_labels else "classifier",
    }
    with ShardWriter(
        out, kind=CAM_STORE_KIND, config_digest=config_digest, attrs=attrs, shard=(shard, shards)
    ) as writer:
        done = writer.done_ids()
        todo = frame[~frame["image_id"].isin(done)]
        t0 = time.perf_counter()
        for row in progress(todo.itertuples(), total=len(todo), desc=f"cam {split} shard {shard}"):
            image = to_tensor(load_rgb(Path(row.path)))
            result = multiscale_cams(
                model, image, cfg, labels=list(row.labels) if use_labels else None
            )
            writer.write(
                str(row.image_id),
                {
                    "cams": result.cams.astype(np.float16),
                    "class_ids": result.class_ids,
                    "scores": result.scores,
                },
            )
        elapsed = time.perf_counter() - t0
    logger.info(
        "cam %s shard %d/%d: %d images (%d resumed) in %.1f s",
        split,
        shard,
        shards,
        len(frame),
        len(done & set(frame["image_id"])),
        elapsed,
    )
    return len(frame)
