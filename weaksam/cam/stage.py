"""The CAM and prompt stages as the workflow runs them: one function per rule.

The training and CAM stages import torch and torchvision inside their functions: importing
them costs about 7 s on a 2-core machine, and the light jobs of this module (merges, pointing,
figures) run once per split and shard, so they must not pay it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from weaksam.cam.prompt_table import read_prompts, write_prompts
from weaksam.config import WeaksamConfig
from weaksam.data.manifest import read_manifest
from weaksam.evaluation.classification import multilabel_map
from weaksam.evaluation.cocofiles import load_ground_truth
from weaksam.evaluation.pointing import pointing_accuracy
from weaksam.h5store import merge_shards
from weaksam.io import write_json
from weaksam.viz.cams import cam_overlay_figure

logger = logging.getLogger(__name__)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def train_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    *,
    model_out: str,
    train_log: str,
    metrics_out: str,
    threads: int,
) -> None:
    """Train the classifier on the training split (one process, or one per GPU under torchrun)
    and report image-level mAP on both splits."""
    from weaksam.cam.train import multi_hot, predict_scores, train_classifier
    from weaksam.training import main_process

    set_threads(threads)
    manifest = read_manifest(manifest_path)
    out = Path(model_out)
    work = out.with_name(out.stem + ".work.pt")
    model = train_classifier(
        manifest, cfg.dataset.train_split, cfg.cam, cfg.assets, out=out, work=work,
        seed=cfg.compute.seed, log_path=Path(train_log), workers=cfg.compute.workers, compute=cfg.compute,
    )  # fmt: skip
    if not main_process():
        return  # under torchrun, process 0 writes the metrics
    work.unlink(missing_ok=True)
    metrics = {}
    for split in cfg.dataset.splits:
        frame = manifest.split(split)
        scores = predict_scores(model, frame["path"].tolist(), max_side=cfg.cam.train_size)
        labels = multi_hot(frame["labels"].tolist(), len(manifest.classes)).numpy().astype(bool)
        metrics[split] = multilabel_map(scores, labels, manifest.classes)
        logger.info("classifier image-level mAP on %s: %.3f", split, metrics[split]["map"])
    write_json(metrics_out, metrics, indent=2)


def cam_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    model_path: str,
    split: str,
    shard: int,
    out: str,
    *,
    digest: str,
    threads: int,
) -> None:
    from weaksam.cam.extract import extract_cams_shard
    from weaksam.cam.train import build_classifier, load_checkpoint
    from weaksam.compute import select_device

    set_threads(threads)
    manifest = read_manifest(manifest_path)
    state = load_checkpoint(model_path)
    if list(state["classes"]) != list(manifest.classes):
        raise ValueError(
            f"{model_path}: trained on classes {state['classes']}, the manifest has {list(manifest.classes)}"
        )
    model = build_classifier(cfg.cam, cfg.assets, len(manifest.classes), pretrained=False)
    model.load_state_dict(state["model"])
    model.to(select_device(cfg.compute))
    extract_cams_shard(
        model, manifest, split, cfg.cam, use_labels=split == cfg.dataset.train_split,
        shard=shard, shards=cfg.compute.shards, out=Path(out), config_digest=digest,
    )  # fmt: skip


def prompts_stage(
    cfg: WeaksamConfig, manifest_path: str, cam_path: str, split: str, out: str, *, digest: str
) -> None:
    from weaksam.cam.prompts import build_prompts  # peak finding runs on torch

    manifest = read_manifest(manifest_path)
    df = build_prompts(cam_path, manifest, split, cfg.prompts, cam_digest=digest)
    write_prompts(df, out, classes=manifest.classes, split=split)
    counts = df["source"].value_counts().to_dict()
    logger.info("prompts %s: %d images, %s", split, df["image_id"].nunique(), counts)


def pointing_stage(
    manifest_path: str, prompts_path: str, gt_path: str, split: str, out: str
) -> None:
    manifest = read_manifest(manifest_path)
    frame = manifest.split(split)
    coco_ids = dict(zip(frame["image_id"], frame["coco_id"].astype(int), strict=True))
    result = pointing_accuracy(
        read_prompts(prompts_path), load_ground_truth(gt_path), coco_ids, manifest.classes
    )
    write_json(out, result, indent=2)
    logger.info(
        "pointing accuracy %s: all peaks %s, top peak %s",
        split,
        json.dumps(result["all_peaks"]),
        json.dumps(result["top_peak"]),
    )


def figure_stage(
    manifest_path: str, cam_path: str, prompts_path: str, split: str, out: str
) -> None:
    manifest = read_manifest(manifest_path)
    cam_overlay_figure(cam_path, read_prompts(prompts_path), manifest, split, out)


def merge_stage(manifest_path: str, shards: list[str], split: str, out: str, *, kind: str) -> None:
    """Merge per-shard stores of ``split`` into one, in manifest order."""
    image_ids = read_manifest(manifest_path).split(split)["image_id"].astype(str).tolist()
    merge_shards(shards, out, kind=kind, image_ids=image_ids)
    logger.info(
        "merged %d shards of %s into %s (%d images)", len(shards), split, out, len(image_ids)
    )
