"""Evaluate a COCO results file against COCO ground truth: VOC AP, CorLoc, COCO AP.

Used by ``weaksam evaluate`` and by the workflow's evaluation steps.
"""

from __future__ import annotations

import math
from typing import Any

from weaksam.evaluation.coco import coco_ap
from weaksam.evaluation.cocofiles import Detections, GroundTruth
from weaksam.evaluation.corloc import corloc
from weaksam.evaluation.voc_ap import voc_detection_ap


def evaluate_detections(
    gt: GroundTruth,
    dets: Detections,
    *,
    iou: float = 0.5,
    plus_one: bool = False,
    with_corloc: bool = True,
    with_coco: bool = True,
) -> dict[str, Any]:
    """All detection metrics as one JSON-ready dict (NaN where undefined)."""
    out: dict[str, Any] = {
        "num_images": len(gt.image_ids),
        "num_detections": len(dets.scores),
        "voc": voc_detection_ap(gt, dets, iou=iou, plus_one=plus_one).to_dict(),
    }
    if with_corloc:
        out["corloc"] = corloc(gt, dets, iou=iou, plus_one=plus_one)
    if with_coco:
        out["coco_bbox"] = coco_ap(gt.raw, dets.raw, iou_type="bbox")
        if any("segmentation" in d for d in dets.raw):
            out["coco_segm"] = coco_ap(gt.raw, dets.raw, iou_type="segm")
    return out


def _pct(v: float) -> str:
    return "  n/a" if isinstance(v, float) and math.isnan(v) else f"{100 * v:5.1f}"


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table of the metrics, for the terminal and rule logs."""
    voc = metrics["voc"]
    lines = [
        f"VOC AP at IoU {voc['iou']} (plus_one={voc['plus_one']}), {metrics['num_images']} images, "
        f"{metrics['num_detections']} detections",
        f"{'class':<20} {'AP11':>6} {'AParea':>7} {'npos':>6} {'ndet':>6}",
    ]
    for name, c in voc["per_class"].items():
        lines.append(
            f"{name:<20} {_pct(c['ap11']):>6} {_pct(c['ap_area']):>7} {c['npos']:>6} {c['ndet']:>6}"
        )
    lines.append(f"{'mean':<20} {_pct(voc['map11']):>6} {_pct(voc['map_area']):>7}")
    if "corloc" in metrics:
        lines.append(
            f"CorLoc (IoU >= {metrics['corloc']['iou']}): {_pct(metrics['corloc']['corloc'])}"
        )
    for key in ("coco_bbox", "coco_segm"):
        if key in metrics:
            m = metrics[key]
            lines.append(f"{key}: " + "  ".join(f"{k} {_pct(v)}" for k, v in m.items()))
    return "\n".join(lines)
