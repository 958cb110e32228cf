"""The retraining stages as the workflow runs them: train on pseudo ground truth, detect on a
split."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import FasterRCNN

from weaksam.cam.imaging import to_tensor
from weaksam.compute import select_device
from weaksam.config import (
    AssetsConfig,
    RetrainConfig,
    WeaksamConfig,
    mask_rcnn_config,
    section_from_dict,
)
from weaksam.data.images import load_rgb
from weaksam.data.manifest import read_manifest
from weaksam.io import write_json
from weaksam.logs import progress
from weaksam.retrain.infer import coco_results, detect
from weaksam.retrain.train import build_from_config, load_checkpoint, read_targets, train_detector

logger = logging.getLogger(__name__)


def train_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    instances_path: str,
    out: str,
    *,
    masks: bool,
    train_log: str,
    threads: int,
    roi_drop: bool = True,
    partial_masks: bool = False,
    stop_after: int | None = None,
) -> None:
    """Train on a COCO instances file of the training split (PGT boxes, or SAM masks: Mask R-CNN,
    with ``wsis.mask_rcnn``'s settings where set). ``roi_drop=False`` switches RoI drop off
    whatever the config says (the ablation); ``partial_masks``: ground-truth masks of some
    images only (the upper bound; ``read_targets``)."""
    torch.set_num_threads(max(1, threads))
    rcfg = mask_rcnn_config(cfg) if masks else cfg.retrain
    if not roi_drop:
        rcfg = replace(rcfg, roi_drop=replace(rcfg.roi_drop, enabled=False))
    manifest = read_manifest(manifest_path)
    with Path(instances_path).open() as f:
        items = read_targets(json.load(f), masks=masks, partial_masks=partial_masks)
    if not items:
        raise ValueError(f"{instances_path}: no images to train on")
    empty = sum(len(i.boxes) == 0 for i in items)
    logger.info(
        "%d images, %d pseudo boxes, %d images without any (kept as negatives)",
        len(items),
        sum(len(i.boxes) for i in items),
        empty,
    )
    work = Path(out).with_name("checkpoint.pt")
    train_detector(
        items,
        list(manifest.classes),
        rcfg,
        cfg.assets,
        masks=masks,
        out=Path(out),
        work=work,
        log_path=Path(train_log),
        seed=cfg.compute.seed,
        compute=cfg.compute,
        stop_after=stop_after,
    )
    if Path(out).exists():
        work.unlink(missing_ok=True)


def load_detector(
    path: str | Path, device: torch.device
) -> tuple[FasterRCNN, RetrainConfig, list[str], bool]:
    state = load_checkpoint(path)
    rcfg = section_from_dict(RetrainConfig, state["retrain_config"])
    classes = list(state["classes"])
    model = build_from_config(
        rcfg, AssetsConfig(), len(classes), masks=bool(state["masks"]), pretrained=False
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), rcfg, classes, bool(state["masks"])


def detect_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    model_path: str,
    split: str,
    out: str,
    *,
    threads: int,
) -> None:
    """COCO results of a split (``image_id`` = manifest coco_id); inference settings from the
    current config (Mask R-CNN's: ``wsis.mask_rcnn``'s where set)."""
    torch.set_num_threads(max(1, threads))
    device = select_device(cfg.compute)
    model, _, classes, masks = load_detector(model_path, device)
    rcfg = mask_rcnn_config(cfg) if masks else cfg.retrain
    manifest = read_manifest(manifest_path)
    if list(manifest.classes) != classes:
        raise ValueError(f"{model_path}: classes {classes} differ from the manifest's")
    frame = manifest.split(split)
    results: list[dict[str, Any]] = []
    for row in progress(frame.itertuples(index=False), total=len(frame), desc=f"detect {split}"):
        image = (to_tensor(load_rgb(Path(str(row.path)))) / 255.0).to(device)
        results.extend(coco_results(detect(model, image, rcfg), int(row.coco_id)))
    write_json(out, results)
    logger.info("%d detections on %d %s images", len(results), len(frame), split)
