"""The pseudo masks' optional post-processing, chosen on the training split.

METHOD.md (section 11) leaves two steps optional: keep the mask's largest connected component
(``wsis.largest_component``) and clip it to its prompt box (``wsis.clip_to_box``). For each
finished results folder given, every trainval image with pseudo boxes is embedded once; its PGT
boxes go through ``masks_for_boxes`` (the workflow's own path) once per combination of the two
options, so the four sets come from the same embedding, and each set is scored as the
``wsis_quality`` rule scores it: the mean IoU of each pseudo mask with the ground-truth mask of
its class that it overlaps most. Writes
``bench/results/wsis_options_<name>.json``.

    .venv/bin/python bench/wsis_options.py config/config.yaml \\
        --results results/demo results/demo_seed1 results/demo_seed2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.config import load_config_files  # noqa: E402
from weaksam.data.images import load_rgb  # noqa: E402
from weaksam.data.manifest import read_manifest  # noqa: E402
from weaksam.data.masks import encode_rle  # noqa: E402
from weaksam.evaluation.cocofiles import xywh_to_xyxy  # noqa: E402
from weaksam.sam.build import build_segmenter  # noqa: E402
from weaksam.wsis.masks import masks_for_boxes  # noqa: E402
from weaksam.wsis.stage import _by_image, mask_quality  # noqa: E402

# (largest_component, clip_to_box)
OPTIONS: list[tuple[bool, bool]] = [(a, b) for a in (False, True) for b in (False, True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+")
    ap.add_argument("--results", type=Path, nargs="+", required=True)
    ap.add_argument("--head", default="mist")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config_files([REPO / "config" / "config.yaml", *args.config])
    seg = build_segmenter(
        cfg.sam, cfg.assets, torch.device("cpu"), threads=args.threads, point_prompts=False
    )
    split = cfg.dataset.train_split
    runs: dict[str, Any] = {}
    for results in args.results:
        manifest = read_manifest(results / "manifest.parquet")
        classes = list(manifest.classes)
        paths = {int(r.coco_id): Path(str(r.path)) for r in manifest.split(split).itertuples()}
        pgt = json.loads((results / "pgt" / args.head / "pgt.json").read_text())
        gt = json.loads((results / "gt" / f"{split}.json").read_text())
        predicted: dict[tuple[bool, bool], list[dict[str, Any]]] = {o: [] for o in OPTIONS}
        for img_id, anns in _by_image(pgt["annotations"]).items():
            seg.set_image(load_rgb(paths[img_id]))
            boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns])).astype(np.float32)
            for largest, clip in OPTIONS:
                masks = masks_for_boxes(
                    seg, boxes, largest=largest, clip_to_box=clip, batch=cfg.sam.points_per_batch
                )
                predicted[(largest, clip)].extend(
                    {**a, "segmentation": encode_rle(m)}
                    for a, m in zip(anns, masks.masks, strict=True)
                )
        runs[str(results)] = {
            f"largest_component={largest},clip_to_box={clip}": mask_quality(
                gt, predicted[(largest, clip)], classes
            )["mean_iou"]
            for largest, clip in OPTIONS
        }
        print(results, json.dumps(runs[str(results)], indent=1), flush=True)
    means = {
        key: float(np.mean([r[key] for r in runs.values()])) for key in next(iter(runs.values()))
    }
    record = {
        "config": args.config,
        "split": split,
        "head": args.head,
        "mean_iou": means,
        "runs": runs,
        "machine": machine_info(),
    }
    print(json.dumps(means, indent=1))
    out = REPO / "bench" / "results" / f"wsis_options_{cfg.dataset.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
