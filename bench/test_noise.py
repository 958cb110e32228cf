"""How much of a test figure's spread over seeds is the test split's own sampling noise.

Bootstraps the test images (drawn with replacement, as many as the split has) and recomputes the
VOC AP50 (11-point) of a finished run's detections on each draw: the standard deviation over
draws is the figure's sampling error for a split of that size, whatever the training seed. With
three seeds the expected range (max - min) of a figure from sampling alone is about 1.7 times
that standard deviation.

    .venv/bin/python bench/test_noise.py results/demo [results/demo_seed1 ...] [--draws 200]

Writes bench/results/test_noise_<name>.json (name of the first folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.evaluation.cocofiles import detections_from_list, ground_truth_from_dict  # noqa: E402
from weaksam.evaluation.voc_ap import voc_detection_ap  # noqa: E402

# detection files of a run folder whose AP50 is bootstrapped: figure -> path inside the folder
FILES = {
    "wsod.mist.ap50_test": "wsod/mist/detections_test.json",
    "retrain.ap50_test": "detector/mist/detections_test.json",
    "wsis.box_ap50_test": "maskrcnn/mist/detections_test.json",
}


def resampled(
    gt: dict[str, Any], dets: list[dict[str, Any]], pick: np.ndarray
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth and detections of the images ``pick`` (ids, repeats allowed), each copy an
    image of its own (new ids 1..len(pick))."""
    images = {im["id"]: im for im in gt["images"]}
    anns: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    for a in gt["annotations"]:
        anns[a["image_id"]].append(a)
    by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    for d in dets:
        by_image[d["image_id"]].append(d)
    out_images, out_anns, out_dets = [], [], []
    for k, i in enumerate(pick, start=1):
        out_images.append({**images[int(i)], "id": k})
        out_anns += [
            {**a, "image_id": k, "id": len(out_anns) + j + 1} for j, a in enumerate(anns[int(i)])
        ]
        out_dets += [{**d, "image_id": k} for d in by_image[int(i)]]
    return {**gt, "images": out_images, "annotations": out_anns}, out_dets


def ap50(gt: dict[str, Any], dets: list[dict[str, Any]]) -> float:
    g = ground_truth_from_dict(gt)
    result = voc_detection_ap(g, detections_from_list(dets, g))
    return float(np.nanmean([c.ap11 for c in result.per_class]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    runs: dict[str, Any] = {}
    for folder in args.results:
        gt = json.loads((folder / "gt" / "test.json").read_text())
        ids = np.array([im["id"] for im in gt["images"]])
        figures: dict[str, Any] = {}
        for name, rel in FILES.items():
            path = folder / rel
            if not path.exists():
                continue
            dets = json.loads(path.read_text())
            draws = [
                ap50(*resampled(gt, dets, rng.choice(ids, len(ids)))) for _ in range(args.draws)
            ]
            figures[name] = {
                "value": ap50(gt, dets),
                "bootstrap_sd": float(np.std(draws)),
                "expected_range_of_3_from_sampling": float(1.69 * np.std(draws)),
            }
            print(f"{folder} {name}: {figures[name]['value']:.3f} +- {np.std(draws):.3f} (sd)")
        runs[str(folder)] = {
            "test_images": len(ids),
            "test_objects": len(gt["annotations"]),
            "figures": figures,
        }
    name = args.results[0].name
    out = REPO / "bench" / "results" / f"test_noise_{name}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "test_noise",
                "draws": args.draws,
                "runs": runs,
                "machine": machine_info(),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
