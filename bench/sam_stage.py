"""The proposal stage itself, decoder against decoder, on a finished run's own prompts.

For every image of a split (the test split unless ``--split`` says otherwise), each variant
``DECODER:GRID`` (``sam.cpu_decoder`` and grid points per side) embeds the image and runs the
workflow's ``weaksam_proposals`` on the run's peak prompts and a ``GRID`` x ``GRID`` grid, timed
per image, variants interleaved image by image so that the machine's load falls on all of them
alike. Each variant's proposals pass the load-time filters and are scored against the ground
truth (recall at IoU 0.5 / 0.7, boxes per image). Every variant with the first variant's grid is
compared with it box by box: the share of the first variant's boxes that have a box at IoU
>= 0.95 in the variant, and the other way round. A variant ``DECODER:GRID:full`` takes the peak
and class-aware prompts' boxes from whole upsampled masks (``masks_to_boxes``, the path before
``mask_boxes``), to time the stage as it was. Writes ``bench/results/sam_stage.json``.

    .venv/bin/snakemake results/demo/prompts/test.parquet --profile profiles/local
    .venv/bin/python bench/sam_stage.py config/config.yaml \\
        --variant onnxruntime:6 --variant factored:6 --variant factored:8 [--threads 1] [--out F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.cam.peaks import grid_points  # noqa: E402
from weaksam.cam.prompt_table import read_prompts  # noqa: E402
from weaksam.config import load_config_files  # noqa: E402
from weaksam.data.images import load_rgb  # noqa: E402
from weaksam.data.manifest import read_manifest  # noqa: E402
from weaksam.evaluation.boxes import box_iou  # noqa: E402
from weaksam.evaluation.cocofiles import load_ground_truth  # noqa: E402
from weaksam.evaluation.recall import proposal_recall  # noqa: E402
from weaksam.proposals.filters import filter_proposals  # noqa: E402
from weaksam.proposals.generate import weaksam_proposals  # noqa: E402
from weaksam.sam.build import build_segmenter  # noqa: E402


def matched_share(ref: list[np.ndarray], other: list[np.ndarray], thresh: float = 0.95) -> float:
    """Share of the boxes of ``ref`` (per image) that have a box of ``other`` at IoU >= thresh."""
    hits = total = 0
    for a, b in zip(ref, other, strict=True):
        total += len(a)
        if len(a) and len(b):
            hits += int((box_iou(a, b).max(1) >= thresh).sum())
    return hits / total if total else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="DECODER:GRID, or DECODER:GRID:full for the point prompts' boxes from whole masks",
    )
    ap.add_argument("--split", default=None, help="default: the config's test split")
    ap.add_argument("--images", type=int, default=0, help="first N images (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sam_stage.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config_files([REPO / "config" / "config.yaml", *args.config])
    variants = args.variant or [
        f"onnxruntime:{cfg.prompts.points_per_side}",
        f"factored:{cfg.prompts.points_per_side}",
    ]
    split = args.split or cfg.dataset.test_split
    results = REPO / "results" / cfg.dataset.name
    frame = read_manifest(results / "manifest.parquet").split(split)
    if args.images:
        frame = frame.head(args.images)
    gt = load_ground_truth(results / "gt" / f"{split}.json")
    prompts = read_prompts(str(results / "prompts" / f"{split}.parquet"))
    segs = {}
    for v in variants:
        decoder, _, *mode = v.split(":")
        seg = build_segmenter(
            replace(cfg.sam, cpu_decoder=decoder),  # type: ignore[arg-type]
            cfg.assets,
            torch.device("cpu"),
            threads=args.threads,
        )
        if mode == ["full"]:  # the earlier path: point prompts' boxes from whole masks
            seg.mask_boxes = lambda low, seg=seg: seg.masks_to_boxes(low).boxes  # type: ignore[method-assign]
        elif mode:
            raise SystemExit(f"--variant {v}: DECODER:GRID or DECODER:GRID:full")
        segs[v] = seg
    boxes: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    seconds = dict.fromkeys(variants, 0.0)
    prompt_count = dict.fromkeys(variants, 0)
    gts = []
    for row in frame.itertuples(index=False):
        image = load_rgb(Path(row.path))
        h, w = image.shape[:2]
        gts.append(gt.boxes[gt.box_image_ids == int(row.coco_id)])
        p = prompts[prompts["image_id"] == row.image_id]
        peaks = p[p["source"] == "peak"]
        for v in variants:
            n = v.split(":")[1]
            seg = segs[v]
            grid = grid_points(w, h, int(n))
            t0 = time.perf_counter()
            seg.set_image(image)
            result = weaksam_proposals(
                seg,
                image,
                peaks[["x", "y"]].to_numpy(np.float32).copy(),
                peaks["class_id"].to_numpy(np.int64),
                grid,
                cfg.proposals,
                batch=cfg.sam.points_per_batch,
            )
            seconds[v] += time.perf_counter() - t0
            prompt_count[v] += len(peaks) + len(grid)
            kept, _, _ = filter_proposals(
                result.boxes, result.scores, result.source, width=w, height=h,
                min_side=cfg.proposals.min_side,
            )  # fmt: skip
            boxes[v].append(kept)
        print(f"{row.image_id}: " + ", ".join(f"{v} {len(boxes[v][-1])}" for v in variants))
    first = variants[0]
    rows: dict[str, Any] = {}
    for v in variants:
        r: dict[str, Any] = proposal_recall(gts, boxes[v], n_values=(), iou_thresholds=(0.5, 0.7))
        rows[v] = {
            "recall_0.5": r["recall"]["0.5"][-1],
            "recall_0.7": r["recall"]["0.7"][-1],
            "boxes_per_image": r["boxes_per_image"],
            "seconds_per_image": seconds[v] / len(frame),
            "prompts_per_image": prompt_count[v] / len(frame),
            "time_vs_first": seconds[v] / seconds[first],
        }
        if v != first and v.split(":")[1] == first.split(":")[1]:
            rows[v]["boxes_of_first_matched_095"] = matched_share(boxes[first], boxes[v])
            rows[v]["boxes_matched_095_in_first"] = matched_share(boxes[v], boxes[first])
        print(f"{v:16s} {json.dumps(rows[v])}")
    record = {
        "config": args.config,
        "split": split,
        "images": len(frame),
        "objects": int(sum(len(g) for g in gts)),
        "points_per_batch": cfg.sam.points_per_batch,
        "threads": args.threads,
        "variants": rows,
        "machine": machine_info(),
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
