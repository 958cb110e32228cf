"""Speed of weaksam's VOC AP against the devkit-style per-detection loop and pycocotools.

Same synthetic problem for all three, in one run; the figures that matter are the ratios.
Writes bench/results/evaluation.json.

    .venv/bin/python bench/bench_evaluation.py [--images 2000] [--classes 20]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from tests.reference_voc import random_problem, reference_voc_eval  # noqa: E402
from weaksam.evaluation.cocofiles import detections_from_list, ground_truth_from_dict  # noqa: E402
from weaksam.evaluation.voc_ap import voc_detection_ap  # noqa: E402


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gt_dict, det_list = random_problem(
        0, crowded=True, num_images=args.images, num_classes=args.classes
    )
    gt = ground_truth_from_dict(gt_dict)
    dets = detections_from_list(det_list, gt)

    t_ours = best_of(lambda: voc_detection_ap(gt, dets), args.repeats)
    cats = [c["id"] for c in gt_dict["categories"]]
    t_ref = best_of(
        lambda: [
            reference_voc_eval(gt_dict, det_list, c, plus_one=False, use_07=False) for c in cats
        ],
        args.repeats,
    )

    def coco() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            cg = COCO()
            cg.dataset = gt_dict
            cg.createIndex()
            ev = COCOeval(cg, cg.loadRes(det_list), "bbox")
            ev.params.iouThrs = [0.5]
            ev.evaluate()
            ev.accumulate()

    t_coco = best_of(coco, args.repeats)
    result = {
        "benchmark": "voc_ap",
        "images": args.images,
        "classes": args.classes,
        "ground_truth": len(gt_dict["annotations"]),
        "detections": len(det_list),
        "seconds": {
            "weaksam": t_ours,
            "devkit_loop_reference": t_ref,
            "pycocotools_iou0.5": t_coco,
        },
        "speedup_vs_devkit_loop": t_ref / t_ours,
        "speedup_vs_pycocotools": t_coco / t_ours,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    out = REPO / "bench" / "results" / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
