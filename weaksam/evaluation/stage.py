"""Evaluation as a workflow stage: one detections file against one ground-truth file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from weaksam.config import WeaksamConfig
from weaksam.evaluation.cocofiles import detections_from_list, load_ground_truth
from weaksam.evaluation.report import evaluate_detections, format_metrics
from weaksam.io import write_json

logger = logging.getLogger(__name__)


def metrics_stage(cfg: WeaksamConfig, gt_path: str, detections_path: str, out: str) -> None:
    """AP50 (11-point and area), CorLoc and COCO AP (box, and mask when the detections carry
    segmentations) of one detections file."""
    gt = load_ground_truth(gt_path)
    with Path(detections_path).open() as f:
        dets = detections_from_list(json.load(f), gt, source=detections_path)
    metrics = evaluate_detections(
        gt, dets, iou=cfg.evaluation.iou, plus_one=cfg.evaluation.plus_one
    )
    write_json(out, metrics, indent=2)
    logger.info("\n%s", format_metrics(metrics))
