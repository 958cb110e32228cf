"""Every stage's figure of its own job beside its upper bound (DESIGN.md section 9), read back
from a finished results folder: what ``bench/quality.py`` records and the report's first table
shows. A figure whose files are absent (stage not configured, no ground truth, bounds not built)
is None.

| stage | figure | bound (rules/oracles.smk) |
|---|---|---|
| classifier + peaks | image mAP; top peak inside a box of its class | - |
| proposals | recall at IoU 0.5, boxes per image | SAM prompted with ground-truth boxes (mask IoU) |
| WSOD | CorLoc (train), AP50 (test), top box / object area | the head trained on proposals + gt boxes |
| PGT | precision / recall | PGT from a perfect ranking of the same detections |
| retraining | AP50 (test) | the detector trained on ground-truth boxes |
| WSIS | pseudo-mask IoU; mask AP50 | gt-box-prompted masks; Mask R-CNN on gt masks |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from weaksam.config import WeaksamConfig
from weaksam.evaluation.cocofiles import load_detections, load_ground_truth

Figures = dict[str, dict[str, float | None]]

# (stage, figure, bound) rows of the report's table; keys into ``stage_figures``' result
BOUND_ROWS: tuple[tuple[str, str, str], ...] = (
    ("proposals", "recall50_test", "bound_gt_box_mask_iou_test"),
    ("wsod.{head}", "corloc_trainval", "bound_corloc_trainval"),
    ("wsod.{head}", "ap50_test", "bound_ap50_test"),
    ("pgt.{head}", "precision", "bound_precision"),
    ("pgt.{head}", "recall", "bound_recall"),
    ("retrain", "ap50_test", "bound_ap50_test"),
    ("wsis", "mask_iou_trainval", "bound_mask_iou_trainval"),
    ("wsis", "mask_ap50_test", "bound_mask_ap50_test"),
)


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _get(data: Any, *keys: str | int) -> float | None:
    for k in keys:
        if data is None:
            return None
        data = data[int(k)] if isinstance(data, list) else data.get(k)
    return None if data is None else float(data)


def top_box_size(detections: Path, gt_path: Path) -> float | None:
    """Median, over (image, labelled class), of the area of the top-scoring detection of the
    class over the area of the ground-truth box of that class it overlaps most: below 1 when
    the WSOD head picks parts of objects."""
    if not detections.exists():
        return None
    gt = load_ground_truth(gt_path)
    dets = load_detections(detections, gt)
    ratios = []
    order = np.argsort(-dets.scores, kind="stable")
    seen: set[tuple[int, int]] = set()
    for i in order:
        key = (int(dets.image_ids[i]), int(dets.labels[i]))
        if key in seen:
            continue
        seen.add(key)
        sel = (gt.box_image_ids == key[0]) & (gt.labels == key[1])
        if not sel.any():
            continue
        b, g = dets.boxes[i], gt.boxes[sel]
        iw = np.clip(np.minimum(b[2], g[:, 2]) - np.maximum(b[0], g[:, 0]), 0, None)
        ih = np.clip(np.minimum(b[3], g[:, 3]) - np.maximum(b[1], g[:, 1]), 0, None)
        area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
        best = int(np.argmax(iw * ih / np.maximum(area_g, 1e-9)))
        ratios.append((b[2] - b[0]) * (b[3] - b[1]) / max(area_g[best], 1e-9))
    return float(np.median(ratios)) if ratios else None


def stage_figures(results: Path, cfg: WeaksamConfig) -> Figures:
    """Every stage's figures and bounds from one finished results folder."""
    train, test = cfg.dataset.train_split, cfg.dataset.test_split
    out: Figures = {}
    cls = _read(results / "cam" / "classifier_metrics.json")
    out["classifier"] = {f"map_{s}": _get(cls, s, "map") for s in (train, test)}
    pointing: dict[str, float | None] = {}
    for s in (train, test):
        p = _read(results / "prompts" / f"{s}.pointing.json")
        pointing[f"top_peak_{s}"] = _get(p, "top_peak", "accuracy")
        pointing[f"top_peak_present_classes_{s}"] = _get(p, "top_peak_present_classes", "accuracy")
        pointing[f"all_peaks_{s}"] = _get(p, "all_peaks", "accuracy")
    out["pointing"] = pointing
    proposals: dict[str, float | None] = {}
    for s in (train, test):
        r = _read(results / "proposals" / f"{s}.recall.json")
        proposals[f"recall50_{s}"] = _get(r, "recall", "0.5", -1)
        proposals[f"recall70_{s}"] = _get(r, "recall", "0.7", -1)
        proposals[f"boxes_per_image_{s}"] = _get(r, "boxes_per_image")
        ss = _read(results / "proposals" / "selective_search" / f"{s}.recall.json")
        proposals[f"selective_search_recall50_{s}"] = _get(ss, "recall", "0.5", -1)
        box_check = _read(results / "wsis" / f"gt_box_check_{s}.json")
        proposals[f"bound_gt_box_mask_iou_{s}"] = _get(box_check, "mean_iou")
    out["proposals"] = proposals
    for head in cfg.wsod.heads:
        m = {s: _read(results / "wsod" / head / f"metrics_{s}.json") for s in (train, test)}
        o = {
            s: _read(results / "oracle" / "wsod" / head / f"metrics_{s}.json")
            for s in (train, test)
        }
        out[f"wsod.{head}"] = {
            "ap50_test": _get(m[test], "voc", "map11"),
            "ap50_area_test": _get(m[test], "voc", "map_area"),
            "corloc_trainval": _get(m[train], "corloc", "corloc"),
            "top_box_area_ratio": top_box_size(
                results / "wsod" / head / f"detections_{train}.json",
                results / "gt" / f"{train}.json",
            ),
            "bound_ap50_test": _get(o[test], "voc", "map11"),
            "bound_corloc_trainval": _get(o[train], "corloc", "corloc"),
        }
        q = _read(results / "pgt" / head / "quality.json")
        b = _read(results / "oracle" / "pgt" / head / "quality.json")
        out[f"pgt.{head}"] = {
            "precision": _get(q, "pgt", "precision"),
            "recall": _get(q, "pgt", "recall"),
            "boxes_per_image": _get(q, "pgt", "boxes_per_image"),
            "top1_precision": _get(q, "top1", "precision"),
            "top1_recall": _get(q, "top1", "recall"),
            "bound_precision": _get(b, "pgt", "precision"),
            "bound_recall": _get(b, "pgt", "recall"),
        }
    oracle_det = _read(results / "oracle" / "detector" / f"metrics_{test}.json")
    retrain: dict[str, float | None] = {"bound_ap50_test": _get(oracle_det, "voc", "map11")}
    if cfg.retrain.heads:
        head = cfg.retrain.heads[0]
        det = _read(results / "detector" / head / f"metrics_{test}.json")
        plain = _read(results / "detector" / head / "no_roi_drop" / f"metrics_{test}.json")
        retrain["ap50_test"] = _get(det, "voc", "map11")
        retrain["ap50_area_test"] = _get(det, "voc", "map_area")
        retrain["ap50_no_roi_drop_test"] = _get(plain, "voc", "map11")
    out["retrain"] = retrain
    wsis: dict[str, float | None] = {}
    oracle_mask = _read(results / "oracle" / "maskrcnn" / f"metrics_{test}.json")
    wsis["bound_mask_ap50_test"] = _get(oracle_mask, "coco_segm", "AP50")
    box_check = _read(results / "wsis" / f"gt_box_check_{train}.json")
    wsis["bound_mask_iou_trainval"] = _get(box_check, "mean_iou")
    if cfg.wsis.heads:
        h = cfg.wsis.heads[0]
        wsis["mask_iou_trainval"] = _get(_read(results / "wsis" / h / "quality.json"), "mean_iou")
        mr = _read(results / "maskrcnn" / h / f"metrics_{test}.json")
        # no detections at all: pycocotools has nothing to score, the AP is 0
        empty = mr is not None and not mr.get("num_detections")
        wsis["mask_ap50_test"] = 0.0 if empty else _get(mr, "coco_segm", "AP50")
        wsis["mask_ap25_test"] = 0.0 if empty else _get(mr, "coco_segm", "AP25")
    out["wsis"] = wsis
    return out
