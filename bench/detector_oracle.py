"""Detector upper bound: the retraining stage's Faster R-CNN, with the config's backbone and
schedule, trained on the training split's ground-truth boxes instead of the pseudo ground truth,
then evaluated on the test split like the retrained detector. The gap between the two is what the
pseudo ground truth costs; a low bound means the schedule, not the PGT, limits the detector.

Writes results/<name>/oracle/ (model, detections, metrics) and bench/results/detector_oracle.json.

    .venv/bin/python bench/detector_oracle.py [--config config/examples/shapes.yaml] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaksam.config import load_config_file  # noqa: E402
from weaksam.evaluation.stage import metrics_stage  # noqa: E402
from weaksam.logs import setup_rule_logging  # noqa: E402
from weaksam.retrain.stage import detect_stage, train_stage  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config/examples/shapes.yaml")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cfg = load_config_file(args.config)
    results = REPO / "results" / cfg.dataset.name
    out = results / "oracle"
    out.mkdir(parents=True, exist_ok=True)
    setup_rule_logging(out / "oracle.log")
    train_split, test_split = cfg.dataset.train_split, cfg.dataset.test_split
    start = time.perf_counter()
    train_stage(
        cfg,
        str(results / "manifest.parquet"),
        str(results / "gt" / f"{train_split}.json"),
        str(out / "model.pt"),
        masks=False,
        train_log=str(out / "train_log.tsv"),
        threads=args.threads,
    )
    train_s = time.perf_counter() - start
    detect_stage(
        cfg,
        str(results / "manifest.parquet"),
        str(out / "model.pt"),
        test_split,
        str(out / f"detections_{test_split}.json"),
        threads=args.threads,
    )
    metrics = out / f"metrics_{test_split}.json"
    metrics_stage(
        cfg,
        str(results / "gt" / f"{test_split}.json"),
        str(out / f"detections_{test_split}.json"),
        str(metrics),
    )
    oracle = json.loads(metrics.read_text())
    row: dict[str, object] = {
        "config": str(
            args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config
        ),
        "train_seconds": round(train_s, 1),
        "oracle_ap50_11pt": oracle["voc"]["map11"],
        "oracle_ap50_area": oracle["voc"]["map_area"],
        "oracle_coco_ap": oracle["coco_bbox"]["AP"],
    }
    for variant in (f"{h}" for h in cfg.retrain.heads):
        for sub in ("", "/no_roi_drop"):
            path = results / "detector" / f"{variant}{sub}" / f"metrics_{test_split}.json"
            if path.exists():
                m = json.loads(path.read_text())
                row[f"pgt_{variant}{sub.replace('/', '_')}_ap50_11pt"] = m["voc"]["map11"]
    row["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
    }
    row["date"] = time.strftime("%Y-%m-%d")
    (REPO / "bench" / "results" / "detector_oracle.json").write_text(
        json.dumps(row, indent=2) + "\n"
    )
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
