"""Ground-truth objects and their masks in COCO form (RLE with string counts, or polygons)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_api

from weaksam.data.images import ImageInfo, orient_mask
from weaksam.data.records import Segmentation, SourceObject


@dataclass
class GtObject:
    """One checked object: class id, XYXY box (x2/y2 exclusive, displayed frame), flags, mask."""

    class_id: int
    box: np.ndarray  # (4,) float32
    ignore: bool
    iscrowd: bool
    segmentation: Segmentation | None
    area: float


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode an (H, W) bool mask as COCO compressed RLE with ``counts`` as str (JSON-safe)."""
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def segmentation_to_mask(seg: Segmentation, height: int, width: int) -> np.ndarray:
    """Decode polygons, uncompressed or compressed RLE into an (H, W) bool mask."""
    if isinstance(seg, list):
        rle = mask_api.merge(mask_api.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):
        rle = mask_api.frPyObjects(seg, height, width)
    else:
        counts = seg["counts"]
        rle = {
            "size": seg["size"],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    return np.asarray(mask_api.decode(rle), dtype=bool)


def object_segmentation(
    obj: SourceObject,
    k: int,
    box: np.ndarray,
    index_map: np.ndarray | None,
    info: ImageInfo,
    orientation: int,
) -> tuple[Segmentation | None, float]:
    """The COCO segmentation and area of object ``k``.

    ``index_map`` is a VOC instance map (object k has value k + 1) in displayed orientation;
    otherwise the source's own segmentation is used, rotated when ``orientation`` != 1.
    Without a mask the area is the box area.
    """
    box_area = float((box[2] - box[0]) * (box[3] - box[1]))
    if index_map is not None:
        m = index_map == k + 1
        if m.any():
            return encode_rle(m), float(m.sum())
        return None, box_area
    if obj.segmentation is None:
        return None, box_area
    if orientation == 1:
        area = (
            obj.area
            if obj.area is not None
            else float(segmentation_to_mask(obj.segmentation, info.height, info.width).sum())
        )
        return obj.segmentation, area
    raw = segmentation_to_mask(obj.segmentation, info.raw_height, info.raw_width)
    m = orient_mask(raw, orientation)
    return encode_rle(m), float(m.sum())


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of bool masks: (N, H, W) x (M, H, W) -> (N, M)."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
