"""The WSOD stages as the workflow runs them: train a head, detect on a split, evaluate."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from weaksam.compute import select_device
from weaksam.config import AssetsConfig, WeaksamConfig, WsodConfig, section_from_dict
from weaksam.data.manifest import Manifest, read_manifest
from weaksam.data.records import DatasetError
from weaksam.h5store import StoreError
from weaksam.io import write_json
from weaksam.logs import progress
from weaksam.wsod import TEST_KEYS
from weaksam.wsod.data import ProposalSource, load_image
from weaksam.wsod.infer import coco_results, detect
from weaksam.wsod.model import HEADS, Head, WsodNet
from weaksam.wsod.train import build_wsod_net, load_checkpoint, train_wsod

logger = logging.getLogger(__name__)


def _head(name: str) -> Head:
    for h in HEADS:
        if h == name:
            return h
    raise ValueError(f"unknown WSOD head {name!r}; choose from {HEADS}")


def training_labels(manifest: Manifest, split: str, exclude_difficult: bool) -> pd.DataFrame:
    """The rows of ``split`` with the labels WSOD trains on: the manifest's ``labels``, or with
    ``exclude_difficult`` its ``clear_labels`` (classes with an object neither ignored nor crowd);
    an image left with no class stays in, every class negative, as in wetectron."""
    frame = manifest.split(split)
    if not exclude_difficult:
        return frame
    if "clear_labels" not in frame:
        raise DatasetError(
            "wsod.exclude_difficult_labels needs the manifest's clear_labels column, which this "
            "manifest predates: rebuild the data stage (snakemake --forcerun dataset)"
        )
    return frame.assign(labels=frame["clear_labels"])


def trainable_images(
    frame: pd.DataFrame, proposals: ProposalSource, *, on_bad_image: str
) -> tuple[pd.DataFrame, list[str]]:
    """Rows whose proposal set is non-empty after the load filters. An image without any is an
    error naming it, or (``on_bad_image: skip``) left out and returned in the skipped list."""
    keep, skipped = [], []
    for row in frame.itertuples(index=False):
        try:
            proposals.boxes(str(row.image_id), int(row.width), int(row.height))
            keep.append(True)
        except StoreError as exc:
            if on_bad_image != "skip":
                raise StoreError(
                    f"{exc}; set dataset.on_bad_image: skip to train without it"
                ) from exc
            logger.warning("skipping %s for WSOD training: %s", row.image_id, exc)
            keep.append(False)
            skipped.append(str(row.image_id))
    return frame[np.array(keep, dtype=bool)].reset_index(drop=True), skipped


def train_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    proposals_path: str,
    head: str,
    out: str,
    *,
    digest: str,
    work: str,
    train_log: str,
    threads: int,
    stop_after: int | None = None,
) -> None:
    torch.set_num_threads(max(1, threads))
    manifest = read_manifest(manifest_path)
    proposals = ProposalSource(
        proposals_path,
        digest=digest,
        min_side=cfg.proposals.min_side,
        max_proposals=cfg.wsod.max_proposals,
        max_area_fraction=cfg.proposals.max_area_fraction,
    )
    frame, skipped = trainable_images(
        training_labels(manifest, cfg.dataset.train_split, cfg.wsod.exclude_difficult_labels),
        proposals,
        on_bad_image=cfg.dataset.on_bad_image,
    )
    if skipped:
        logger.warning("%d training images have no proposals and were left out", len(skipped))
    train_wsod(
        frame,
        list(manifest.classes),
        proposals,
        cfg.wsod,
        _head(head),
        cfg.assets,
        out=Path(out),
        work=Path(work),
        log_path=Path(train_log),
        seed=cfg.compute.seed,
        compute=cfg.compute,
        stop_after=stop_after,
    )
    if Path(out).exists():
        Path(work).unlink(missing_ok=True)  # finished: the resume checkpoint is not needed


def load_model(path: str | Path, device: torch.device) -> tuple[WsodNet, WsodConfig, list[str]]:
    """Rebuild a trained WSOD model from its checkpoint (no pretrained weights are read)."""
    state = load_checkpoint(path)
    wcfg = section_from_dict(WsodConfig, state["wsod_config"])
    classes = list(state["classes"])
    model = build_wsod_net(
        wcfg, AssetsConfig(), len(classes), _head(state["head"]), pretrained=False
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), wcfg, classes


# the keys of the `wsod` section that the detection rules read from the config
DETECT_KEYS = (*TEST_KEYS, "max_side", "max_proposals")


def detect_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    model_path: str,
    proposals_path: str,
    split: str,
    out: str,
    *,
    digest: str,
    threads: int,
) -> None:
    """Detections of a split in COCO results format (``image_id`` = the manifest's coco_id)."""
    torch.set_num_threads(max(1, threads))
    device = select_device(cfg.compute)
    model, trained, classes = load_model(model_path, device)
    # the network is the checkpoint's; how it is run at test time is the config's (a change of
    # a test key reruns the detection jobs, not the training)
    wcfg = replace(trained, **{k: getattr(cfg.wsod, k) for k in DETECT_KEYS})
    manifest = read_manifest(manifest_path)
    if list(manifest.classes) != classes:
        raise ValueError(f"{model_path}: classes {classes} differ from the manifest's")
    proposals = ProposalSource(
        proposals_path,
        digest=digest,
        min_side=cfg.proposals.min_side,
        max_proposals=wcfg.max_proposals,
        max_area_fraction=cfg.proposals.max_area_fraction,
    )
    frame = manifest.split(split)
    results: list[dict[str, Any]] = []
    without = 0
    for row in progress(frame.itertuples(index=False), total=len(frame), desc=f"detect {split}"):
        try:
            _, image, rois, _, _, _ = load_image(row, proposals, len(classes))
        except StoreError:
            without += 1  # no proposals: no detections, counted in the log
            continue
        results.extend(coco_results(detect(model, image, rois, wcfg), int(row.coco_id)))
    if without:
        logger.warning(
            "%d of %d %s images have no proposals (no detections)", without, len(frame), split
        )
    write_json(out, results)
    logger.info("%d detections on %d %s images", len(results), len(frame), split)
