"""Choose the retrainers' settings on the training split, never the test split.

The retrained Faster R-CNN (and Mask R-CNN) learn from pseudo ground truth, but what a schedule,
an input size or a head size can do is measured best on the ground truth itself: for every
variant (config sections and keys merged over the config files, e.g.
``{"retrain": {"iterations": 400}}``) and every fold k of the training split (images with
``coco_id % folds == k`` held out), the detector is trained on the ground-truth boxes (masks with
``--masks``) of the other images exactly as the ``retrain_train`` / ``maskrcnn_train`` rules train
it, run on the held-out images as ``retrain_detect`` runs it, and judged there: AP50 (11-point and
area), and mask AP50 for Mask R-CNN. Results, with the machine and the seconds each run took, go to
``bench/results/tune_retrain_<dataset>.json`` (``tune_maskrcnn_<dataset>.json`` with ``--masks``),
kept and extended: a variant's folds from earlier runs are kept only while its resolved settings
and the number of folds are the same, so a rerun after a config change starts the variant anew.

    .venv/bin/snakemake results/shapes/gt/trainval.json --profile profiles/local \
        --configfile config/examples/shapes.yaml                            # the ground truth
    .venv/bin/python bench/tune_retrain.py config/examples/shapes.yaml \
        --variant base='{}' --variant long='{"retrain": {"iterations": 400}}' [--folds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import variant_record  # noqa: E402
from weaksam.cam.imaging import to_tensor  # noqa: E402
from weaksam.compute import select_device  # noqa: E402
from weaksam.config import (  # noqa: E402
    WeaksamConfig,
    load_config,
    mask_rcnn_config,
    merge_config,
    read_config_files,
)
from weaksam.data.images import load_rgb  # noqa: E402
from weaksam.evaluation.cocofiles import (  # noqa: E402
    detections_from_list,
    ground_truth_from_dict,
)
from weaksam.evaluation.report import evaluate_detections  # noqa: E402
from weaksam.retrain.infer import coco_results, detect  # noqa: E402
from weaksam.retrain.stage import load_detector, train_stage  # noqa: E402


def subset(instances: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The COCO instances of ``image_ids`` only (categories and the rest kept)."""
    return {
        **instances,
        "images": [im for im in instances["images"] if int(im["id"]) in image_ids],
        "annotations": [a for a in instances["annotations"] if int(a["image_id"]) in image_ids],
    }


def run_fold(
    cfg: WeaksamConfig,
    results: Path,
    instances: dict[str, Any],
    fold: int,
    folds: int,
    *,
    masks: bool,
    threads: int,
) -> dict[str, Any]:
    """Train on the ground truth outside ``fold``, detect and judge on the images inside it."""
    ids = np.array(sorted(int(im["id"]) for im in instances["images"]))
    held = {int(i) for i in ids[ids % folds == fold]}
    train = subset(instances, {int(i) for i in ids} - held)
    test = subset(instances, held)
    rcfg = mask_rcnn_config(cfg) if masks else cfg.retrain
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_path, model_path = Path(tmp) / "train.json", Path(tmp) / "model.pt"
        train_path.write_text(json.dumps(train))
        train_stage(
            cfg,
            str(results / "manifest.parquet"),
            str(train_path),
            str(model_path),
            masks=masks,
            train_log=str(Path(tmp) / "train_log.tsv"),
            threads=threads,
        )
        trained = time.perf_counter() - t0
        torch.set_num_threads(max(1, threads))
        device = select_device(cfg.compute)
        model, _, _, _ = load_detector(model_path, device)
        dets: list[dict[str, Any]] = []
        for im in test["images"]:
            image = (to_tensor(load_rgb(Path(im["file_name"]))) / 255.0).to(device)
            dets.extend(coco_results(detect(model, image, rcfg), int(im["id"])))
    gt = ground_truth_from_dict(test, source=f"fold {fold}")
    metrics = evaluate_detections(
        gt,
        detections_from_list(dets, gt, source=f"fold {fold} detections"),
        iou=cfg.evaluation.iou,
        plus_one=cfg.evaluation.plus_one,
        with_corloc=False,
    )
    out: dict[str, Any] = {
        "train_images": len(train["images"]),
        "test_images": len(test["images"]),
        "ap50": metrics["voc"]["map11"],
        "ap50_area": metrics["voc"]["map_area"],
        "coco_bbox_ap50": metrics["coco_bbox"]["AP50"],
        "train_seconds": trained,
        "seconds": time.perf_counter() - t0,
    }
    if masks:  # no mask among the detections: no mask AP
        out["mask_ap50"] = metrics.get("coco_segm", {}).get("AP50", float("nan"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+", help="config file(s), later ones override")
    ap.add_argument("--variant", action="append", default=[], help="name=JSON of sections and keys")
    ap.add_argument("--folds", type=int, default=2, help="folds of the training split")
    ap.add_argument("--fold", type=int, action="append", default=None, help="run only these folds")
    ap.add_argument("--masks", action="store_true", help="Mask R-CNN on the ground-truth masks")
    ap.add_argument(
        "--threads", type=int, default=None, help="default: compute.detector_threads, as the rules"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    raw = read_config_files([REPO / "config" / "config.yaml", *args.config])  # as the Snakefile
    base = load_config(raw)
    results = REPO / "results" / base.dataset.name
    instances = json.loads((results / "gt" / f"{base.dataset.train_split}.json").read_text())
    variants = dict(v.split("=", 1) for v in args.variant) or {"config": "{}"}
    kind = "maskrcnn" if args.masks else "retrain"
    out = args.out or REPO / "bench" / "results" / f"tune_{kind}_{base.dataset.name}.json"
    record = variant_record(out, config=args.config, folds=args.folds)
    for name, text in variants.items():
        overrides = json.loads(text or "{}")
        cfg = load_config(merge_config(raw, overrides))
        settings = json.loads(
            json.dumps(asdict(mask_rcnn_config(cfg) if args.masks else cfg.retrain))
        )
        threads = args.threads or cfg.compute.detector_threads
        earlier = record["variants"].get(name, {})
        same = earlier.get("settings") == settings and earlier.get("folds_total") == args.folds
        runs: dict[str, Any] = dict(earlier.get("folds", {})) if same else {}
        for fold in args.fold if args.fold is not None else range(args.folds):
            print(f"variant {name} fold {fold}: {text or 'the config'}", flush=True)
            runs[str(fold)] = run_fold(
                cfg, results, instances, fold, args.folds, masks=args.masks, threads=threads
            ) | {"threads": threads}
            print(f"variant {name} fold {fold}: {json.dumps(runs[str(fold)])}", flush=True)
            keys = ["ap50", "ap50_area"] + (["mask_ap50"] if args.masks else [])
            record["variants"][name] = {
                "overrides": overrides,
                "settings": settings,
                "folds_total": args.folds,
                "folds": runs,
                **{f"mean_{k}": float(np.mean([r[k] for r in runs.values()])) for k in keys},
            }
            out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
