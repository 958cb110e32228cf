"""Adaptive PGT ablation on a finished results folder: precision / recall of the pseudo ground
truth (IoU 0.5, training split) as METHOD.md section 9 builds it, without containment
suppression, at higher keep thresholds, and top-1 per class. Reads the WSOD detections the
workflow wrote; trains nothing.

Writes bench/results/pgt_ablation.json.

    .venv/bin/python bench/pgt_ablation.py [--results results/shapes] [--heads wsddn oicr mist]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaksam.data.manifest import read_manifest  # noqa: E402
from weaksam.evaluation.cocofiles import ground_truth_from_dict  # noqa: E402
from weaksam.pgt.adaptive import PgtParams  # noqa: E402
from weaksam.pgt.stage import build_pgt, pgt_quality  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "results" / "shapes")
    parser.add_argument("--heads", nargs="+", default=["wsddn", "oicr", "mist"])
    parser.add_argument("--t-keep", type=float, default=0.3)
    args = parser.parse_args()
    results: Path = args.results
    split = read_manifest(results / "manifest.parquet").frame["split"].iloc[0]
    gt = ground_truth_from_dict(json.loads((results / "gt" / f"{split}.json").read_text()))
    variants = {
        "adaptive (METHOD.md)": PgtParams("adaptive", args.t_keep, 0.85),
        "adaptive, no containment suppression": PgtParams("adaptive", args.t_keep, 1.01),
        "adaptive, t_keep 0.5": PgtParams("adaptive", 0.5, 0.85),
        "adaptive, t_keep 0.7": PgtParams("adaptive", 0.7, 0.85),
        "top1": PgtParams("top1", args.t_keep, 0.85),
    }
    rows = []
    for head in args.heads:
        path = results / "wsod" / head / f"detections_{split}.json"
        dets = json.loads(path.read_text())
        for name, params in variants.items():
            pgt = build_pgt(str(results / "manifest.parquet"), dets, split, params)
            q = pgt_quality(gt, pgt)
            row = {
                "head": head,
                "variant": name,
                "precision": round(q["precision"], 4),
                "recall": round(q["recall"], 4),
                "boxes_per_image": round(q["boxes_per_image"], 2),
            }
            rows.append(row)
            print(row, flush=True)
    out = REPO / "bench" / "results" / "pgt_ablation.json"
    result = {
        "benchmark": "pgt_ablation",
        "results": str(results.relative_to(REPO) if results.is_relative_to(REPO) else results),
        "split": split,
        "iou": 0.5,
        "rows": rows,
        "date": time.strftime("%Y-%m-%d"),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
