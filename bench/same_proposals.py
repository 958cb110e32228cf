"""Regenerate a finished run's WeakSAM proposals with the current code and compare them with the
stored ones, image by image: the check that a change to the SAM stage left its output as it was.

    .venv/bin/python bench/same_proposals.py config/config.yaml --results results/demo \
        --split test [--images N] [--out FILE]

The stored proposals are the raw shard stores (``proposals/<split>/shard-*.h5``, before the
load-time filters); the regenerated ones go through ``weaksam_proposals`` with the config's
segmenter, on the same images and prompts. Per image: the boxes, scores, sources and empty-mask
count equal (bit for bit), or the largest box difference. Writes a JSON summary with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from bench.machine import machine_info  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="+", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--images", type=int, default=0, help="at most this many images (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from weaksam.cam.prompt_table import read_prompts
    from weaksam.compute import select_device, use_bf16
    from weaksam.config import load_config_files
    from weaksam.data.images import load_rgb
    from weaksam.data.manifest import read_manifest
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.build import build_segmenter

    torch.set_num_threads(args.threads)
    cfg = load_config_files(args.config)
    manifest = read_manifest(args.results / "manifest.parquet")
    paths = dict(zip(manifest.frame["image_id"].astype(str), manifest.frame["path"], strict=True))
    prompts = read_prompts(args.results / "prompts" / f"{args.split}.parquet")
    by_image = {str(k): g for k, g in prompts.groupby("image_id", sort=False)}
    device = select_device(cfg.compute)
    seg = build_segmenter(
        cfg.sam, cfg.assets, device, bf16=use_bf16(cfg.compute, device), threads=args.threads
    )
    shards = sorted((args.results / "proposals" / args.split).glob("shard-*.h5"))
    if not shards:
        raise SystemExit(f"no proposal shards under {args.results / 'proposals' / args.split}")
    rows = []
    for shard in shards:
        with h5py.File(shard, "r") as f:
            for image_id, group in f["images"].items():
                if args.images and len(rows) >= args.images:
                    break
                p = by_image.get(image_id, prompts.iloc[:0])
                peaks, grid = p[p["source"] == "peak"], p[p["source"] == "grid"]
                new = weaksam_proposals(
                    seg,
                    load_rgb(Path(paths[image_id])),
                    peaks[["x", "y"]].to_numpy(np.float32).copy(),
                    peaks["class_id"].to_numpy(np.int64),
                    grid[["x", "y"]].to_numpy(np.float32).copy(),
                    cfg.proposals,
                    batch=cfg.sam.points_per_batch,
                )
                old_boxes = group["boxes"][()]
                same_shape = old_boxes.shape == new.boxes.shape
                rows.append(
                    {
                        "image_id": image_id,
                        "boxes": len(old_boxes),
                        "identical": bool(
                            same_shape
                            and np.array_equal(old_boxes, new.boxes)
                            and np.array_equal(group["scores"][()], new.scores)
                            and np.array_equal(group["source"][()], new.source)
                            and int(group.attrs["empty_masks"]) == new.empty_masks
                        ),
                        "largest_box_difference": float(np.abs(old_boxes - new.boxes).max())
                        if same_shape and len(old_boxes)
                        else None,
                    }
                )
    identical = sum(r["identical"] for r in rows)
    summary = {
        "config": [str(c) for c in args.config],
        "results": str(args.results),
        "split": args.split,
        "images": len(rows),
        "identical_images": identical,
        "boxes": sum(r["boxes"] for r in rows),
        "differing": [r for r in rows if not r["identical"]],
        "machine": machine_info(),
    }
    print(f"{identical} of {len(rows)} images identical ({summary['boxes']} stored boxes)")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
