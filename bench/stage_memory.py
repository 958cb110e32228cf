"""Peak memory and time of every stage of a finished run, from Snakemake's benchmark files.

Every job of the workflow writes ``results/<name>/benchmarks/<job>.tsv`` (Snakemake's
``benchmark:``): wall seconds, peak resident set size (``max_rss``, MiB), CPU seconds. This groups
the jobs by stage (shards and splits of one rule together) and records, per stage, the largest
peak RSS of any of its jobs, the longest job and the summed wall time.

    .venv/bin/python bench/stage_memory.py results/demo [--out bench/results/stage_memory_demo.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402

# benchmark file stem -> stage, in workflow order; the first pattern that matches wins
STAGES = [
    (r"train_classifier", "CAM classifier training"),
    (r"cam_(trainval|test)_\d+", "CAMs and prompts (per shard)"),
    (r"proposals_(trainval|test)_\d+", "SAM proposals (per shard)"),
    (r"selective_search_.*", "Selective Search proposals"),
    (r"wsod_train_.*", "WSOD training"),
    (r"wsod_detect_.*", "WSOD detection"),
    (r"retrain_.*", "Faster R-CNN training + test"),
    (r"wsis_masks_.*", "SAM pseudo masks (per shard)"),
    (r"maskrcnn_.*", "Mask R-CNN training + test"),
    (r"oracle_.*", "oracle bounds (quality harness)"),
]


def stage_of(stem: str) -> str:
    for pattern, stage in STAGES:
        if re.fullmatch(pattern, stem):
            return stage
    return stem


def stage_table(results: Path) -> list[dict[str, Any]]:
    """One row per stage: jobs, peak RSS (MiB) over its jobs, longest job and summed seconds."""
    files = sorted((results / "benchmarks").glob("*.tsv"))
    if not files:
        raise SystemExit(f"{results}/benchmarks holds no benchmark files: run the workflow first")
    rows: dict[str, dict[str, Any]] = {}
    for path in files:
        frame = pd.read_csv(path, sep="\t")
        last = frame.iloc[-1]  # one row per repeat of the job (one unless `repeat(…)`)
        stage = stage_of(path.stem)
        row = rows.setdefault(
            stage, {"stage": stage, "jobs": 0, "peak_rss_mib": 0.0, "longest_s": 0.0, "sum_s": 0.0}
        )
        row["jobs"] += 1
        rss = float(last["max_rss"]) if pd.notna(last["max_rss"]) else 0.0
        row["peak_rss_mib"] = max(row["peak_rss_mib"], rss)
        row["longest_s"] = max(row["longest_s"], float(last["s"]))
        row["sum_s"] += float(last["s"])
    order = {stage: k for k, (_, stage) in enumerate(STAGES)}
    table = sorted(rows.values(), key=lambda r: order.get(r["stage"], len(order)))
    for row in table:
        for key in ("peak_rss_mib", "longest_s", "sum_s"):
            row[key] = round(row[key], 1)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results folder, e.g. results/demo")
    parser.add_argument("--out", type=Path, help="JSON to write (default: print only)")
    args = parser.parse_args()
    table = stage_table(args.results)
    width = max(len(r["stage"]) for r in table)
    print(f"{'stage':{width}}  jobs  peak RSS MiB  longest s  sum s")
    for r in table:
        print(
            f"{r['stage']:{width}}  {r['jobs']:4d}  {r['peak_rss_mib']:12.0f}  "
            f"{r['longest_s']:9.1f}  {r['sum_s']:5.0f}"
        )
    if args.out:
        record = {"machine": machine_info(), "results": str(args.results), "stages": table}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
