"""COCO box and mask AP through pycocotools, including mask AP at IoU 0.25 and 0.70.

pycocotools ignores an annotation's ``ignore`` flag (it uses ``iscrowd`` only), so VOC difficult
objects count as ordinary ground truth here; the VOC metrics treat them as ignored.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

STANDARD_IOUS = np.linspace(0.5, 0.95, 10)
EXTRA_IOUS = (0.25, 0.70)


def _coco_from_dict(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(data)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _ap_at(precision: np.ndarray, t: int | slice) -> float:
    """Mean of valid precision entries at IoU index ``t``, all areas, the largest maxDets."""
    p = precision[t, :, :, 0, -1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else float("nan")


def coco_ap(
    gt: dict[str, Any],
    detections: list[dict[str, Any]],
    *,
    iou_type: Literal["bbox", "segm"] = "bbox",
) -> dict[str, float]:
    """AP, AP50, AP75, AP25, AP70, APs/APm/APl and AR@100 of ``detections`` (COCO results) on
    ``gt`` (COCO instances dict). Returns NaNs when there are no detections."""
    keys = ("AP", "AP25", "AP50", "AP70", "AP75", "APs", "APm", "APl", "AR100")
    unjudged = 0
    if iou_type == "segm":
        gt, detections, unjudged = _images_with_masks(gt, detections)
    if not detections:
        empty = dict.fromkeys(keys, float("nan"))
        return {**empty, "images_without_masks": unjudged} if iou_type == "segm" else empty
    coco_gt = _coco_from_dict(gt)
    dets = copy.deepcopy(detections)
    if iou_type == "bbox":
        for d in dets:  # loadRes would derive bboxes from masks otherwise
            d.pop("segmentation", None)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.iouThrs = np.concatenate([[EXTRA_IOUS[0]], STANDARD_IOUS])
        ev.evaluate()
        ev.accumulate()
    logger.debug("pycocotools: %s", out.getvalue())
    thrs = ev.params.iouThrs
    prec = ev.eval["precision"]  # (T, R, K, A, M)

    def idx(v: float) -> int:
        return int(np.nonzero(np.isclose(thrs, v))[0][0])

    std = slice(1, None)
    areas = {"APs": 1, "APm": 2, "APl": 3}
    result = {
        "AP": _ap_at(prec, std),
        "AP25": _ap_at(prec, idx(0.25)),
        "AP50": _ap_at(prec, idx(0.5)),
        "AP70": _ap_at(prec, idx(0.7)),
        "AP75": _ap_at(prec, idx(0.75)),
    }
    for name, a in areas.items():
        p = prec[std, :, :, a, -1]
        valid = p[p > -1]
        result[name] = float(valid.mean()) if valid.size else float("nan")
    r = ev.eval["recall"][std, :, 0, -1]
    result["AR100"] = float(r[r > -1].mean()) if (r > -1).any() else float("nan")
    if iou_type == "segm":
        result["images_without_masks"] = unjudged
    return result


def _images_with_masks(
    gt: dict[str, Any], detections: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Mask AP is defined on the images whose every object has a ground-truth mask (VOC12, for
    one, has masks for some images only), or whose instance map was read (``segmented``: its
    objects without pixels are left out, the image kept): the others and their detections are
    left out and counted. A detection without a segmentation is an error, not a miss."""
    missing = [d for d in detections if "segmentation" not in d]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(detections)} detections have no segmentation (image "
            f"{missing[0].get('image_id')}); mask AP needs a mask for every detection"
        )
    # an image read with its instance map (``segmented``) keeps its masks; an object of it
    # without one has no pixels there and is not an instance, as in the instance map itself
    segmented = {int(i["id"]) for i in gt["images"] if i.get("segmented")}
    maskless = {int(a["image_id"]) for a in gt["annotations"] if "segmentation" not in a}
    if not maskless:
        return gt, detections, 0
    unmasked = maskless - segmented
    kept = {
        **gt,
        "images": [i for i in gt["images"] if int(i["id"]) not in unmasked],
        "annotations": [
            a
            for a in gt["annotations"]
            if int(a["image_id"]) not in unmasked and "segmentation" in a
        ],
    }
    dets = [d for d in detections if int(d["image_id"]) not in unmasked]
    logger.info("mask AP: %d images without ground-truth masks left out", len(unmasked))
    return kept, dets, len(unmasked)
