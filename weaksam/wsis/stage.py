"""The WSIS stages: SAM masks for the pseudo boxes (sharded, merged), their quality against the
ground-truth masks, and the SAM-alone check with ground-truth boxes as prompts.

SAM and torch are imported inside the functions that run SAM, so that the merge and quality jobs
do not pay their ~7 s import."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weaksam.config import WeaksamConfig
from weaksam.data.images import load_rgb
from weaksam.data.manifest import read_manifest
from weaksam.data.masks import encode_rle, mask_iou, segmentation_to_mask
from weaksam.evaluation.cocofiles import xywh_to_xyxy
from weaksam.io import write_json
from weaksam.logs import progress

if TYPE_CHECKING:
    from weaksam.sam.predictor import PromptableSegmenter

logger = logging.getLogger(__name__)


def _by_image(annotations: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for a in annotations:
        out.setdefault(int(a["image_id"]), []).append(a)
    return out


def _segmenter(cfg: WeaksamConfig, threads: int) -> PromptableSegmenter:
    from weaksam.compute import select_device, use_bf16
    from weaksam.sam.build import build_segmenter

    device = select_device(cfg.compute)
    return build_segmenter(
        cfg.sam,
        cfg.assets,
        device,
        bf16=use_bf16(cfg.compute, device),
        threads=threads,
        point_prompts=False,  # box prompts only
    )


def masks_shard_stage(
    cfg: WeaksamConfig, manifest_path: str, pgt_path: str, shard: int, out: str, *, threads: int
) -> None:
    """Masks of the pseudo boxes of one shard of the training split: a JSON list of the PGT
    annotations of those images, each with ``segmentation`` (RLE), ``area``, the mask's ``bbox``
    (the prompt box is kept as ``prompt_bbox``) and ``filled`` when SAM returned nothing."""
    from weaksam.wsis.masks import masks_for_boxes

    frame = read_manifest(manifest_path).shard(cfg.dataset.train_split, shard, cfg.compute.shards)
    with Path(pgt_path).open() as f:
        by_image = _by_image(json.load(f)["annotations"])
    seg = _segmenter(cfg, threads)
    annotations: list[dict[str, Any]] = []
    filled = 0
    for row in progress(frame.itertuples(index=False), total=len(frame), desc=f"masks {shard}"):
        anns = by_image.get(int(row.coco_id), [])
        if not anns:
            continue
        seg.set_image(load_rgb(Path(str(row.path))))
        boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns])).astype(np.float32)
        result = masks_for_boxes(
            seg,
            boxes,
            largest=cfg.wsis.largest_component,
            clip_to_box=cfg.wsis.clip_to_box,
            batch=cfg.sam.points_per_batch,
        )
        for a, m, was_filled in zip(anns, result.masks, result.filled, strict=True):
            ys, xs = np.nonzero(m)
            x1, y1, x2, y2 = (
                float(xs.min()),
                float(ys.min()),
                float(xs.max() + 1),
                float(ys.max() + 1),
            )
            annotations.append(
                {
                    **a,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "prompt_bbox": a["bbox"],
                    "segmentation": encode_rle(m),
                    "area": float(m.sum()),
                    "filled": bool(was_filled),
                }
            )
            filled += int(was_filled)
    write_json(out, annotations)
    logger.info(
        "shard %d: %d masks, %d empty masks filled with their box", shard, len(annotations), filled
    )


def merge_masks_stage(pgt_path: str, shard_paths: list[str], out: str) -> None:
    """One COCO instances file: the PGT's images and categories, the shards' annotations."""
    with Path(pgt_path).open() as f:
        pgt = json.load(f)
    annotations: list[dict[str, Any]] = []
    for path in shard_paths:
        with Path(path).open() as f:
            annotations.extend(json.load(f))
    if len(annotations) != len(pgt["annotations"]):
        raise ValueError(
            f"{out}: {len(annotations)} masks for {len(pgt['annotations'])} pseudo boxes; "
            "a shard is missing images"
        )
    for k, a in enumerate(annotations, start=1):
        a["id"] = k
    info = {"description": "weaksam pseudo masks (SAM, box prompts)", "version": "1"}
    write_json(out, {**pgt, "info": info, "annotations": annotations})


def mask_quality(
    gt: dict[str, Any], predicted: list[dict[str, Any]], classes: list[str]
) -> dict[str, Any]:
    """Per predicted mask, its best IoU with a ground-truth mask of the same class in the image
    (0 when the image has no object of that class); the mean per class and over all masks.

    A mask whose class has an object without a ground-truth mask in its image cannot be judged
    (datasets such as VOC12 have masks for some images only): it is left out of the means and
    counted in ``unjudged``, never scored 0. In an image read with its instance map
    (``segmented``) an object without a mask has no pixels there and is not an instance."""
    images = {int(i["id"]): i for i in gt["images"]}
    gt_by_image = _by_image(gt["annotations"])
    per_class: dict[int, list[float]] = {}
    unjudged = 0
    for img_id, anns in _by_image(predicted).items():
        info = images[img_id]
        h, w = int(info["height"]), int(info["width"])
        gts = gt_by_image.get(img_id, [])
        for a in anns:
            same = [g for g in gts if int(g["category_id"]) == int(a["category_id"])]
            if info.get("segmented"):
                same = [g for g in same if "segmentation" in g]
            if any("segmentation" not in g for g in same):
                unjudged += 1
                continue
            best = 0.0
            if same:
                pm = segmentation_to_mask(a["segmentation"], h, w)[None]
                gm = np.stack([segmentation_to_mask(g["segmentation"], h, w) for g in same])
                best = float(mask_iou(pm, gm).max())
            per_class.setdefault(int(a["category_id"]) - 1, []).append(best)
    every = [v for vals in per_class.values() for v in vals]
    return {
        "mean_iou": float(np.mean(every)) if every else float("nan"),
        "masks": len(every),
        "unjudged": unjudged,
        "per_class": {
            classes[c]: {"mean_iou": float(np.mean(v)), "masks": len(v)}
            for c, v in sorted(per_class.items())
        },
    }


def masks_quality_stage(
    cfg: WeaksamConfig, manifest_path: str, masks_path: str, gt_path: str, out: str
) -> None:
    with Path(masks_path).open() as f:
        masks = json.load(f)
    with Path(gt_path).open() as f:
        gt = json.load(f)
    classes = list(read_manifest(manifest_path).classes)
    result = mask_quality(gt, masks["annotations"], classes)
    result["filled"] = sum(bool(a.get("filled")) for a in masks["annotations"])
    write_json(out, result, indent=2)
    logger.info("pseudo masks: mean IoU %.3f over %d", result["mean_iou"], result["masks"])


def gt_box_check_stage(
    cfg: WeaksamConfig, manifest_path: str, gt_path: str, split: str, out: str, *, threads: int
) -> None:
    """SAM alone: every ground-truth box with a mask prompts SAM; mean IoU with its own mask."""
    from weaksam.wsis.masks import masks_for_boxes

    with Path(gt_path).open() as f:
        gt = json.load(f)
    classes = list(read_manifest(manifest_path).classes)
    images = {int(i["id"]): i for i in gt["images"]}
    seg = _segmenter(cfg, threads)
    per_class: dict[int, list[float]] = {}
    by_image = _by_image(
        [a for a in gt["annotations"] if "segmentation" in a and not a.get("iscrowd")]
    )
    for img_id, anns in progress(by_image.items(), total=len(by_image), desc=f"gt boxes {split}"):
        info = images[img_id]
        h, w = int(info["height"]), int(info["width"])
        seg.set_image(load_rgb(Path(info["file_name"])))
        boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns])).astype(np.float32)
        result = masks_for_boxes(
            seg,
            boxes,
            largest=cfg.wsis.largest_component,
            clip_to_box=cfg.wsis.clip_to_box,
            batch=cfg.sam.points_per_batch,
        )
        gm = np.stack([segmentation_to_mask(a["segmentation"], h, w) for a in anns])
        ious = mask_iou(result.masks, gm).diagonal()
        for a, v in zip(anns, ious, strict=True):
            per_class.setdefault(int(a["category_id"]) - 1, []).append(float(v))
    every = [v for vals in per_class.values() for v in vals]
    write_json(
        out,
        {
            "split": split,
            "prompts": "ground-truth boxes",
            "mean_iou": float(np.mean(every)) if every else float("nan"),
            "masks": len(every),
            "per_class": {
                classes[c]: {"mean_iou": float(np.mean(v)), "masks": len(v)}
                for c, v in sorted(per_class.items())
            },
        },
        indent=2,
    )
