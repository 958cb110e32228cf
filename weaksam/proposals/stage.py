"""The proposal stages as the workflow runs them: one function per rule."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from weaksam.cam.prompt_table import read_prompts
from weaksam.config import WeaksamConfig
from weaksam.data.images import load_rgb
from weaksam.data.manifest import read_manifest
from weaksam.evaluation.cocofiles import load_ground_truth
from weaksam.evaluation.recall import proposal_recall
from weaksam.h5store import ShardWriter
from weaksam.io import write_json
from weaksam.logs import progress
from weaksam.proposals.selective_search import selective_search
from weaksam.proposals.store import PROPOSAL_STORE_KIND, SOURCES, ImageProposals, ProposalReader

logger = logging.getLogger(__name__)


def _shard_frame(
    manifest_path: str, split: str, shard: int, shards: int
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    manifest = read_manifest(manifest_path)
    return manifest.shard(split, shard, shards), manifest.classes


def _write(writer: ShardWriter, image_id: str, p: ImageProposals, **attrs: int) -> None:
    writer.write(
        image_id,
        {
            "boxes": p.boxes.astype(np.float32),
            "scores": p.scores.astype(np.float32),
            "source": p.source.astype(np.uint8),
        },
        attrs={"empty_masks": p.empty_masks, **attrs},
    )


def weaksam_shard_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    prompts_path: str,
    split: str,
    shard: int,
    out: str,
    *,
    digest: str,
    threads: int,
) -> None:
    """SAM proposals of one shard of a split, resumable per image."""
    # torch and SAM are imported here, not at the top: the recall and selective-search jobs of
    # this module must not pay their ~7 s import.
    import torch

    from weaksam.compute import select_device, use_bf16
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.build import build_segmenter

    torch.set_num_threads(max(1, threads))
    frame, classes = _shard_frame(manifest_path, split, shard, cfg.compute.shards)
    prompts = read_prompts(prompts_path)
    by_image = {k: g for k, g in prompts.groupby("image_id", sort=False)}
    device = select_device(cfg.compute)
    seg = build_segmenter(
        cfg.sam, cfg.assets, device, bf16=use_bf16(cfg.compute, device), threads=threads
    )
    attrs = {
        "model": seg.name,
        "classes": list(classes),
        "sources": SOURCES,
        "split": split,
        "method": "weaksam",
    }
    t0, n_boxes = time.perf_counter(), 0
    with ShardWriter(
        out,
        kind=PROPOSAL_STORE_KIND,
        config_digest=digest,
        attrs=attrs,
        shard=(shard, cfg.compute.shards),
    ) as writer:
        todo = frame[~frame["image_id"].isin(writer.done_ids())]
        for row in progress(
            todo.itertuples(), total=len(todo), desc=f"proposals {split} shard {shard}"
        ):
            p = by_image.get(row.image_id, prompts.iloc[:0])
            peaks, grid = p[p["source"] == "peak"], p[p["source"] == "grid"]
            if len(p) == 0:
                logger.warning("image %s has no prompts: no proposals", row.image_id)
            result = weaksam_proposals(
                seg,
                load_rgb(Path(row.path)),
                peaks[["x", "y"]].to_numpy(np.float32).copy(),
                peaks["class_id"].to_numpy(np.int64),
                grid[["x", "y"]].to_numpy(np.float32).copy(),
                cfg.proposals,
                batch=cfg.sam.points_per_batch,
            )
            n_boxes += len(result.boxes)
            _write(writer, str(row.image_id), result, prompts=len(p))
    elapsed = time.perf_counter() - t0
    logger.info(
        "proposals %s shard %d: %d images, %d boxes, %.1f s (%.2f s / image)",
        split,
        shard,
        len(todo),
        n_boxes,
        elapsed,
        elapsed / max(len(todo), 1),
    )


def selective_search_shard_stage(
    cfg: WeaksamConfig,
    manifest_path: str,
    split: str,
    shard: int,
    out: str,
    *,
    digest: str,
    threads: int,
) -> None:
    import cv2

    cv2.setNumThreads(max(1, threads))
    frame, classes = _shard_frame(manifest_path, split, shard, cfg.compute.shards)
    attrs = {
        "model": "opencv-selective-search-fast",
        "classes": list(classes),
        "sources": SOURCES,
        "split": split,
        "method": "selective_search",
    }
    with ShardWriter(
        out,
        kind=PROPOSAL_STORE_KIND,
        config_digest=digest,
        attrs=attrs,
        shard=(shard, cfg.compute.shards),
    ) as writer:
        todo = frame[~frame["image_id"].isin(writer.done_ids())]
        for row in progress(
            todo.itertuples(), total=len(todo), desc=f"selective search {split} shard {shard}"
        ):
            _write(
                writer,
                str(row.image_id),
                selective_search(
                    load_rgb(Path(row.path)), max_boxes=cfg.proposals.selective_search_max
                ),
            )


def recall_stage(
    cfg: WeaksamConfig, manifest_path: str, store_path: str, gt_path: str, split: str, out: str
) -> None:
    """Recall of a proposal file (after the load-time filters) against the split's ground truth
    (crowd boxes left out, difficult ones kept, as the public recall evaluator)."""
    frame = read_manifest(manifest_path).split(split)
    gt = load_ground_truth(gt_path)
    gt_sets, prop_sets = [], []
    with ProposalReader(
        store_path,
        min_side=cfg.proposals.min_side,
        max_area_fraction=cfg.proposals.max_area_fraction,
    ) as reader:
        for row in frame.itertuples():
            sel = (gt.box_image_ids == int(row.coco_id)) & ~gt.crowd
            gt_sets.append(gt.boxes[sel])
            prop_sets.append(reader.load(str(row.image_id), int(row.width), int(row.height)).boxes)
        method = reader.attr("method")
    result = proposal_recall(
        gt_sets, prop_sets, n_values=cfg.evaluation.recall_n, iou_thresholds=(0.5, 0.7)
    )
    result.update(
        {
            "method": method,
            "split": split,
            "min_side": cfg.proposals.min_side,
            "max_area_fraction": cfg.proposals.max_area_fraction,
        }
    )
    write_json(out, result, indent=2)
    logger.info("recall %s %s: %s", method, split, result)


def oracle_proposals_stage(
    manifest_path: str,
    store_path: str,
    gt_path: str,
    split: str,
    out: str,
    *,
    digest: str,
    oracle_digest: str,
) -> None:
    """The WSOD stage's upper bound input: every image's proposals followed by its ground-truth
    boxes (crowd boxes left out; source ``ground_truth``, score 1), in a store of its own."""
    frame = read_manifest(manifest_path).split(split)
    gt = load_ground_truth(gt_path)
    with ProposalReader(store_path, config_digest=digest) as reader:
        attrs = {k: reader.attr(k) for k in ("model", "classes", "split")}
        attrs.update({"sources": SOURCES, "method": "weaksam+ground_truth"})
        with ShardWriter(
            out, kind=PROPOSAL_STORE_KIND, config_digest=oracle_digest, attrs=attrs
        ) as writer:
            for row in frame.itertuples():
                p = reader.raw(str(row.image_id))
                sel = (gt.box_image_ids == int(row.coco_id)) & ~gt.crowd
                boxes = gt.boxes[sel].astype(np.float32)
                _write(
                    writer,
                    str(row.image_id),
                    ImageProposals(
                        np.concatenate([p.boxes, boxes]),
                        np.concatenate([p.scores, np.ones(len(boxes), np.float32)]),
                        np.concatenate(
                            [p.source, np.full(len(boxes), SOURCES["ground_truth"], np.uint8)]
                        ),
                        0,
                    ),
                )
    logger.info("%s: proposals and ground-truth boxes of %d images", out, len(frame))
