"""The PGT stage: WSOD detections on the training split -> pseudo ground truth (COCO instances,
boxes only, a ``score`` per annotation), and its precision / recall when ground truth exists."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from weaksam.config import WeaksamConfig
from weaksam.data.manifest import coco_categories, read_manifest
from weaksam.evaluation.boxes import best_match, box_iou_pairs, group_pairs
from weaksam.evaluation.cocofiles import (
    Detections,
    GroundTruth,
    detections_from_list,
    ground_truth_from_dict,
    load_ground_truth,
)
from weaksam.evaluation.voc_ap import match_class
from weaksam.io import write_json
from weaksam.pgt.adaptive import PgtParams, adaptive_pgt

logger = logging.getLogger(__name__)


def build_pgt(
    manifest_path: str, detections: list[dict[str, Any]], split: str, params: PgtParams
) -> dict[str, Any]:
    """COCO instances of ``split`` whose annotations are the kept detections (image labels from
    the manifest, never from ground truth boxes)."""
    manifest = read_manifest(manifest_path)
    frame = manifest.split(split)
    images = [
        {
            "id": int(r.coco_id),
            "file_name": str(r.path),
            "width": int(r.width),
            "height": int(r.height),
            "image_key": str(r.image_id),
        }
        for r in frame.itertuples(index=False)
    ]
    skeleton = {
        "images": images,
        "annotations": [],
        "categories": coco_categories(manifest.classes),
    }
    dets = detections_from_list(detections, ground_truth_from_dict(skeleton), source="detections")
    by_image: dict[int, np.ndarray] = {}
    order = np.argsort(dets.image_ids, kind="stable")
    ids, starts = np.unique(dets.image_ids[order], return_index=True)
    if ids.size:  # np.split of an empty order gives one empty part for no image
        for img, part in zip(ids, np.split(order, starts[1:]), strict=True):
            by_image[int(img)] = part
    annotations: list[dict[str, Any]] = []
    for r in frame.itertuples(index=False):
        sel = by_image.get(int(r.coco_id), np.zeros(0, np.int64))
        keep = sel[
            adaptive_pgt(
                dets.boxes[sel], dets.scores[sel], dets.labels[sel], list(r.labels), params
            )
        ]
        for k in keep:
            x1, y1, x2, y2 = (float(v) for v in dets.boxes[k])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(r.coco_id),
                    "category_id": int(dets.labels[k]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "score": float(dets.scores[k]),
                }
            )
    return {
        "info": {"description": f"weaksam pseudo ground truth ({params.mode})", "version": "1"},
        **skeleton,
        "annotations": annotations,
    }


def pgt_quality(gt: GroundTruth, pgt: dict[str, Any], *, iou: float = 0.5) -> dict[str, Any]:
    """Precision and recall of pseudo boxes against the ground truth at ``iou`` (one-to-one,
    in score order per class; boxes matched to ignored ground truth are left out)."""
    entries = [
        {k: a[k] for k in ("image_id", "category_id", "bbox")} | {"score": a.get("score", 1.0)}
        for a in pgt["annotations"]
    ]
    dets: Detections = detections_from_list(entries, gt, source="pseudo ground truth")
    tp_total = fp_total = npos_total = 0
    per_class: dict[str, dict[str, float]] = {}
    for class_id, name in enumerate(gt.classes):
        tp, fp, npos = match_class(gt, dets, class_id, iou=iou, plus_one=False)
        t, f = int(tp.sum()), int(fp.sum())
        tp_total, fp_total, npos_total = tp_total + t, fp_total + f, npos_total + npos
        per_class[name] = {
            "precision": t / (t + f) if t + f else float("nan"),
            "recall": t / npos if npos else float("nan"),
            "boxes": t + f,
            "gt": npos,
        }
    return {
        "iou": iou,
        "precision": tp_total / (tp_total + fp_total) if tp_total + fp_total else float("nan"),
        "recall": tp_total / npos_total if npos_total else float("nan"),
        "boxes": tp_total + fp_total,
        "gt": npos_total,
        "boxes_per_image": (tp_total + fp_total) / max(1, len(gt.image_ids)),
        "per_class": per_class,
    }


def perfect_ranking(detections: list[dict[str, Any]], gt: GroundTruth) -> list[dict[str, Any]]:
    """The same detections rescored by an oracle: each one's score becomes its IoU with the
    best-overlapping ground-truth box of its class in its image (0 when there is none), so the
    PGT rule picks what a perfect WSOD ranking would. The PGT stage's upper bound."""
    dets = detections_from_list(detections, gt, source="detections")
    c = len(gt.classes)
    det_keys = dets.image_ids.astype(np.int64) * c + dets.labels
    gt_keys = gt.box_image_ids.astype(np.int64) * c + gt.labels
    order = np.argsort(gt_keys, kind="stable")
    qi, ti = group_pairs(det_keys, gt_keys[order])  # (P,) detection and box index pairs
    overlaps = box_iou_pairs(dets.boxes[qi], gt.boxes[order[ti]])
    best, _ = best_match(qi, ti, overlaps, len(detections))
    return [
        {**entry, "score": float(max(score, 0.0))}
        for entry, score in zip(detections, best, strict=True)
    ]


def pgt_bound_stage(
    cfg: WeaksamConfig, manifest_path: str, detections_path: str, gt_path: str, out: str
) -> None:
    """Quality of the PGT built from the head's own detections ranked by an oracle
    (``perfect_ranking``), for the configured mode and for both modes."""
    with Path(detections_path).open() as f:
        detections = json.load(f)
    gt = load_ground_truth(gt_path)
    ranked = perfect_ranking(detections, gt)
    split = cfg.dataset.train_split
    quality: dict[str, Any] = {"mode": cfg.pgt.mode, "t_keep": cfg.pgt.t_keep, "bound": True}
    for mode in ("adaptive", "top1"):
        params = PgtParams(mode, cfg.pgt.t_keep, cfg.pgt.t_con, cfg.pgt.subtract_min)
        quality[mode] = pgt_quality(
            gt, build_pgt(manifest_path, ranked, split, params), iou=cfg.evaluation.iou
        )
    quality["pgt"] = quality[cfg.pgt.mode]
    write_json(out, quality, indent=2)
    logger.info(
        "PGT bound (perfect ranking) precision %.3f recall %.3f",
        quality["pgt"]["precision"],
        quality["pgt"]["recall"],
    )


def pgt_stage(cfg: WeaksamConfig, manifest_path: str, detections_path: str, out: str) -> None:
    """The pseudo ground truth of the training split from a WSOD head's detections."""
    with Path(detections_path).open() as f:
        detections = json.load(f)
    pgt = build_pgt(manifest_path, detections, cfg.dataset.train_split, _params(cfg))
    write_json(out, pgt)
    logger.info("%d pseudo boxes on %d images", len(pgt["annotations"]), len(pgt["images"]))


def _params(cfg: WeaksamConfig) -> PgtParams:
    return PgtParams(
        mode=cfg.pgt.mode,
        t_keep=cfg.pgt.t_keep,
        t_con=cfg.pgt.t_con,
        subtract_min=cfg.pgt.subtract_min,
    )


def pgt_quality_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    detections_path: str,
    pgt_path: str,
    out: str,
    *,
    gt_path: str | None = None,
) -> None:
    """Precision and recall of the PGT against the ground truth, and of both PGT modes (the
    ablation); without ground truth, a file that says so."""
    params = _params(cfg)
    if gt_path is None:
        write_json(out, {"mode": params.mode, "ground_truth": False}, indent=2)
        return
    with Path(detections_path).open() as f:
        detections = json.load(f)
    with Path(pgt_path).open() as f:
        pgt = json.load(f)
    split = cfg.dataset.train_split
    gt = load_ground_truth(gt_path)
    quality: dict[str, Any] = {"mode": params.mode, "t_keep": params.t_keep, "ground_truth": True}
    quality["pgt"] = pgt_quality(gt, pgt, iou=cfg.evaluation.iou)
    for mode in ("adaptive", "top1"):  # both, for the ablation; the configured one is built
        other = PgtParams(mode, params.t_keep, params.t_con, params.subtract_min)
        quality[mode] = (
            quality["pgt"]
            if other == params
            else pgt_quality(
                gt, build_pgt(manifest_path, detections, split, other), iou=cfg.evaluation.iou
            )
        )
    write_json(out, quality, indent=2)
    logger.info(
        "PGT precision %.3f recall %.3f", quality["pgt"]["precision"], quality["pgt"]["recall"]
    )
