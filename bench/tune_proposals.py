"""Choose the SAM proposal settings on the training split, never the test split.

For a sample of training images (each embedded once), every combination of grid density
(``--grids``), grid box-NMS threshold (``--nms``) and kept multimask outputs for the peak prompts
(``--keeps``) is decoded from the
workflow's own peak prompts (``prompts/<split>.parquet``), passed through the load-time filters and
scored: recall at IoU 0.5 / 0.7 against the ground truth, boxes per image and decoder seconds per
image. Two bounds come with it: the best of SAM's three outputs prompted at each object's interior
point (what a perfect peak would give; also each output alone, which says which outputs to
keep) and SAM prompted with each ground-truth box. With ``--refine`` every setting is also scored
with each of its boxes given back to SAM as a box prompt (the refined boxes alone, added to the
setting's, and added with near-duplicates at IoU > 0.7 / 0.9 dropped): whether a box prompt
recovers objects that the points only half cover. Results go to
``bench/results/tune_proposals_<dataset>.json`` with the machine.

    .venv/bin/snakemake results/demo/prompts/trainval.parquet --profile profiles/local
    .venv/bin/python bench/tune_proposals.py config/config.yaml --images 24
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

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
from weaksam.proposals.generate import grid_candidates, mask_box_nms  # noqa: E402
from weaksam.sam.build import build_segmenter  # noqa: E402
from weaksam.sam.predictor import PromptableSegmenter  # noqa: E402


def _peak_outputs(
    seg: PromptableSegmenter, points: torch.Tensor, classes: np.ndarray
) -> dict[int, list[torch.Tensor]]:
    """Boxes of each multimask output k (0, 1, 2) of the single-point prompts and of the
    class-aware prompts (classes with as many points decoded together, as the workflow)."""
    out: dict[int, list[torch.Tensor]] = {0: [], 1: [], 2: []}
    if not len(points):
        return out
    decoded = [seg.decode(points[:, None], torch.ones(len(points), 1, dtype=torch.long))]
    groups = [points[torch.from_numpy(classes == c)] for c in np.unique(classes)]
    for n in sorted({len(g) for g in groups}):
        batch = torch.stack([g for g in groups if len(g) == n])
        decoded.append(seg.decode(batch, torch.ones(batch.shape[:2], dtype=torch.long)))
    for k, dec in itertools.product(out, decoded):
        mb = seg.masks_to_boxes(dec.low_res[:, 1 + k])
        out[k].append(mb.boxes[mb.areas > 0])
    return out


def _refined(
    seg: PromptableSegmenter, boxes: np.ndarray, w: int, h: int, min_side: float
) -> np.ndarray:
    """Each box given back to SAM as a box prompt (its single-mask output): the box of the mask."""
    if not len(boxes):
        return np.zeros((0, 4), np.float32)
    dec = seg.decode(boxes=torch.from_numpy(boxes).float())
    mb = seg.masks_to_boxes(dec.low_res[:, 0])
    out = mb.boxes[mb.areas > 0].numpy()
    kept, _, _ = filter_proposals(
        out, np.zeros(len(out)), np.zeros(len(out)), width=w, height=h, min_side=min_side
    )
    return kept


def _dedupe(boxes: np.ndarray, thresh: float) -> np.ndarray:
    """Indices of the boxes left when a later box at IoU > thresh with a kept one is dropped."""
    from torchvision.ops import nms

    if not len(boxes):
        return np.zeros(0, np.int64)
    order = -np.arange(len(boxes), dtype=np.float32)  # earlier boxes first
    return np.sort(nms(torch.from_numpy(boxes).float(), torch.from_numpy(order), thresh).numpy())


def _interior_points(masks: list[np.ndarray]) -> torch.Tensor:
    """(N, 2) xy: the pixel centre farthest from each mask's border."""
    import cv2

    pts = []
    for mask in masks:
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        pts.append([x + 0.5, y + 0.5])
    return torch.tensor(pts, dtype=torch.float32).reshape(-1, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--grids", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--keeps", nargs="+", default=["1,2", "0,1", "0", "0,1,2"])
    ap.add_argument("--nms", type=float, nargs="+", default=[0.3])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=None, help="default bench/results/tune_proposals_<name>.json"
    )
    ap.add_argument(
        "--refine",
        action="store_true",
        help="also score each setting with its boxes re-prompted to SAM as box prompts",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config_files([REPO / "config" / "config.yaml", *args.config])
    split = cfg.dataset.train_split
    results = REPO / "results" / cfg.dataset.name
    manifest = read_manifest(results / "manifest.parquet")
    frame = manifest.split(split)
    rng = np.random.default_rng(cfg.compute.seed)
    frame = frame.iloc[np.sort(rng.permutation(len(frame))[: args.images])]
    gt = load_ground_truth(results / "gt" / f"{split}.json")
    prompts = read_prompts(results / "prompts" / f"{split}.parquet")
    seg = build_segmenter(cfg.sam, cfg.assets, torch.device("cpu"), threads=args.threads)
    keeps = [tuple(int(k) for k in text.split(",")) for text in args.keeps]
    combos: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {"encoder": 0.0}
    bounds: dict[str, list[np.ndarray]] = {
        "interior_point_output_0": [],
        "interior_point_output_1": [],
        "interior_point_output_2": [],
        "interior_point_best_of_3": [],
        "gt_box_prompt": [],
    }
    gts: list[np.ndarray] = []
    from pycocotools import mask as mask_utils

    for row in frame.itertuples(index=False):
        image = load_rgb(Path(row.path))
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        seg.set_image(image)
        seconds["encoder"] += time.perf_counter() - t0
        sel = gt.box_image_ids == int(row.coco_id)
        gt_boxes = gt.boxes[sel]
        gts.append(gt_boxes)
        p = prompts[prompts["image_id"] == row.image_id]
        peaks = p[p["source"] == "peak"]
        t0 = time.perf_counter()
        outputs = _peak_outputs(
            seg,
            torch.from_numpy(peaks[["x", "y"]].to_numpy(np.float32).copy()),
            peaks["class_id"].to_numpy(np.int64),
        )
        seconds["peaks_all_outputs"] = seconds.get("peaks_all_outputs", 0.0) + (
            time.perf_counter() - t0
        )
        grids = {}
        for n in args.grids:
            t0 = time.perf_counter()
            grid = torch.from_numpy(grid_points(w, h, n))
            b, s, _ = grid_candidates(seg, grid, cfg.proposals, cfg.sam.points_per_batch)
            seconds[f"grid{n}"] = seconds.get(f"grid{n}", 0.0) + time.perf_counter() - t0
            for t in args.nms:
                grids[n, t] = b[mask_box_nms(b, s, t)]
        for n, t, keep in itertools.product(args.grids, args.nms, keeps):
            parts = [grids[n, t]] + [b for k in keep for b in outputs[k]]
            boxes = torch.cat(parts).numpy() if parts else np.zeros((0, 4), np.float32)
            kept, _, _ = filter_proposals(
                boxes, np.zeros(len(boxes)), np.zeros(len(boxes)), width=w, height=h,
                min_side=cfg.proposals.min_side,
            )  # fmt: skip
            name = f"grid{n}_nms{t:g}+peaks{''.join(map(str, keep))}"
            combos.setdefault(name, []).append(kept)
            if args.refine:
                t0 = time.perf_counter()
                refined = _refined(seg, kept, w, h, cfg.proposals.min_side)
                seconds[f"refine_{name}"] = seconds.get(f"refine_{name}", 0.0) + (
                    time.perf_counter() - t0
                )
                combos.setdefault(f"{name}+refine_only", []).append(refined)
                both = np.concatenate([kept, refined])
                combos.setdefault(f"{name}+refine", []).append(both)
                for thr in (0.7, 0.9):
                    keep_idx = _dedupe(both, thr)
                    combos.setdefault(f"{name}+refine_dedupe{thr:g}", []).append(both[keep_idx])
        # bounds: a perfect peak in every object, and the ground-truth box as the prompt
        ids = np.nonzero(sel)[0]
        masks = [
            mask_utils.decode(gt.raw["annotations"][i]["segmentation"]).astype(bool) for i in ids
        ]
        pts = _interior_points(masks)
        if len(pts):
            dec = seg.decode(pts[:, None], torch.ones(len(pts), 1, dtype=torch.long))
            for k in range(3):
                mb = seg.masks_to_boxes(dec.low_res[:, 1 + k])
                bounds[f"interior_point_output_{k}"].append(mb.boxes.numpy())
            best = []
            for i in range(len(pts)):
                mb = seg.masks_to_boxes(dec.low_res[i, 1:])
                ious = box_iou(mb.boxes.numpy(), gt_boxes[i : i + 1])[:, 0]
                best.append(mb.boxes[int(ious.argmax())].numpy())
            bounds["interior_point_best_of_3"].append(np.stack(best))
            dec = seg.decode(boxes=torch.from_numpy(gt_boxes).float())
            bounds["gt_box_prompt"].append(seg.masks_to_boxes(dec.low_res[:, 0]).boxes.numpy())
        else:
            for k in bounds:
                bounds[k].append(np.zeros((0, 4), np.float32))
        print(f"{row.image_id}: {len(gt_boxes)} objects", flush=True)
    rows = {}
    for name, props in {**combos, **bounds}.items():
        r = proposal_recall(gts, props, n_values=(), iou_thresholds=(0.5, 0.7))
        rows[name] = {
            "recall_0.5": r["recall"]["0.5"][-1],
            "recall_0.7": r["recall"]["0.7"][-1],
            "mabo": r["mabo"],
            "boxes_per_image": r["boxes_per_image"],
        }
        print(f"{name:28s} {json.dumps(rows[name])}")
    record = {
        "config": args.config,
        "split": split,
        "images": len(frame),
        "objects": int(sum(len(g) for g in gts)),
        "rows": rows,
        "seconds_per_image": {k: v / len(frame) for k, v in seconds.items()},
        "points_per_batch": cfg.sam.points_per_batch,
        "threads": args.threads,
        "machine": machine_info(),
    }
    out = args.out or REPO / "bench" / "results" / f"tune_proposals_{cfg.dataset.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["seconds_per_image"]))


if __name__ == "__main__":
    main()
