"""Stage A inference: multi-scale, flipped CAMs per image (METHOD.md section 2.3).

For each scale (the first, 1.0, defines the output size) the image is resized bicubically and run
as is and flipped; each CAM (ReLU of the head's maps) is upsampled bilinearly to the image size,
the flipped ones are flipped back, and all passes are summed. Only the image's classes are kept:
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
    return F.interpolate(image[None], size=size, mode="bicubic", align_corners=False).clamp(0, 255)


def cells_to_pixels(raw: torch.Tensor, h: int, w: int, stride: int) -> torch.Tensor:
    """(P, C, n, m) cell maps -> (P, C, h, w) with cell j's value exactly at pixel
    ``stride * j + (stride - 1) / 2``, the centre of its stride x stride patch: bilinear by the
    stride, cropped (n = ceil(h / stride), EfficientNet's "same" padding) or extended by the edge
    cells (n = floor(h / stride), VGG)."""
    up = F.interpolate(raw, scale_factor=float(stride), mode="bilinear", align_corners=False)
    short_h, short_w = max(0, h - up.shape[-2]), max(0, w - up.shape[-1])
    if short_h or short_w:
        up = F.pad(up, (0, short_w, 0, short_h), mode="replicate")
    return up[..., :h, :w]


def _padded_cams(
    model: CamClassifier, batch: torch.Tensor, pad: int, alignment: str = "stretch"
) -> torch.Tensor:
    """Raw CAMs of a batch whose borders are extended by reflection (``pad`` pixels, cropped
    off again), so zero "same" padding does not light up the borders: (P, C, h, w) at the
    batch's pixels, or (P, C, n, m) cells with ``pad`` 0 and ``alignment`` "stretch".

    ``alignment`` (``cam.cell_alignment``) places the cells on the pixels. "stretch" spreads the
    n cells evenly over the (padded) input, as WeakTr stretches its patch grid (METHOD.md 2.3):
    cell j lands at (j + 0.5) H / n - 0.5, which is the centre of its 16 x 16 patch (16j + 7.5)
    only when H = 16n; with EfficientNet's n = ceil(H / 16) the cells drift towards the top left,
    by up to a stride at the bottom right (11 px of a 371 px padded input). "stride" puts every
    cell on its patch centre (``cells_to_pixels``). EfficientNet-Lite0's TensorFlow "same"
    padding puts the geometric centre of its receptive field at 16j + 15, but its ImageNet
    weights respond nearer the patch centre (the |gradient| centroid of a cell, pretrained:
    about 16j + 0 to 7.5); placing cells at 16j + 15 lowered the demo classifier's top-peak
    pointing on trainval from 0.885 to 0.808, and antialiasing the 0.8 pass (as PIL's resize) to
    0.869: neither is done."""
    stride = int(getattr(model.backbone, "stride", 1))
    _, _, h, w = batch.shape
    if pad <= 0:
        raw = model.cams(batch)
        return raw if alignment == "stretch" else cells_to_pixels(raw, h, w, stride)
    p = min(pad, h - 1, w - 1)
    raw = model.cams(F.pad(batch, (p, p, p, p), mode="reflect"))  # (P, C, n, m)
    if alignment == "stretch":
        size = (h + 2 * p, w + 2 * p)
        full = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
    else:
        full = cells_to_pixels(raw, h + 2 * p, w + 2 * p, stride)
    return full[..., p : p + h, p : p + w]


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
        raw = _padded_cams(model, batch, cfg.border_pad, cfg.cell_alignment).float()
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
