"""Choose the CAM classifier's settings on the training split, never the test split.

The training split is cut into ``--folds`` parts; for every variant (a set of ``cam`` keys over
the config's) and fold, a classifier is trained on the other parts and judged on the held-out
part: image-level mAP, and pointing accuracy of the top CAM peak of each (image, class), both with
the classes the classifier predicts (end to end, as the test split runs) and with the image's
labelled classes (localisation alone, as the training split runs). Results, with the machine,
go to ``bench/results/tune_cam_<dataset>.json``.

    .venv/bin/snakemake results/demo/manifest.parquet --profile profiles/local   # data first
    .venv/bin/python bench/tune_cam.py config/config.yaml \
        --variant base='{}' --variant full='{"train_size": 256}' [--thresholds 0.3,0.5,0.7]

With ``--classifier PATH`` (a trained ``cam/classifier.pt`` of the workflow) nothing is trained:
each variant changes only how CAMs are extracted (``scales``, ``flip``, ``max_side``,
``border_pad``, ``cell_alignment``) and is judged on the whole training split, with the image's
labelled classes (what the workflow's training split uses), with the peaks found on the float32
maps and on the maps rounded to float16 (as the CAM store keeps them for the prompt stage); its
mAP and predicted-class pointing are those of images the classifier was trained on, recorded but
not the measure. Results go to
``bench/results/tune_cam_extract_<dataset>.json``.

    .venv/bin/python bench/tune_cam.py config/examples/shapes.yaml \
        --classifier results/shapes/cam/classifier.pt \
        --variant stretch='{"cell_alignment": "stretch"}' --variant stride='{"cell_alignment": "stride"}'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import float_list, variant_record  # noqa: E402
from weaksam.cam.extract import multiscale_cams  # noqa: E402
from weaksam.cam.imaging import to_tensor  # noqa: E402
from weaksam.cam.peaks import peak_points  # noqa: E402
from weaksam.cam.train import (  # noqa: E402
    build_classifier,
    load_checkpoint,
    multi_hot,
    predict_scores,
    train_classifier,
)
from weaksam.config import WeaksamConfig, load_config_files  # noqa: E402
from weaksam.data.images import load_rgb  # noqa: E402
from weaksam.data.manifest import Manifest, read_manifest  # noqa: E402
from weaksam.evaluation.classification import multilabel_map  # noqa: E402
from weaksam.evaluation.cocofiles import GroundTruth, load_ground_truth  # noqa: E402


def _top_peak_hits(
    cams: np.ndarray, class_ids: np.ndarray, boxes: np.ndarray, labels: np.ndarray, cfg: Any
) -> list[bool]:
    """Per kept class: does its top peak fall inside a ground-truth box of that class?"""
    hits = []
    for k, c in enumerate(class_ids.tolist()):
        pts, _ = peak_points(
            cams[k], kernel=cfg.prompts.peak_kernel, top_k=cfg.prompts.top_k, threshold=0.0
        )
        if not len(pts):
            hits.append(False)
            continue
        x, y = pts[0] + 0.5
        b = boxes[labels == c]
        hits.append(bool(((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])).any()))
    return hits


def evaluate_fold(
    model: torch.nn.Module,
    frame: pd.DataFrame,
    gt: GroundTruth,
    cfg: WeaksamConfig,
    classes: int,
    thresholds: tuple[float, ...] = (),
    float16: bool = False,
) -> dict[str, Any]:
    """Held-out mAP and top-peak pointing with the predicted and the labelled classes. Each
    class's CAM is normalised on its own, so one pass over all classes gives the pointing of
    every ``cam.test_class_threshold`` in ``thresholds`` (classes whose first-pass probability
    reaches it) as well. ``float16``: also the labelled classes' pointing with the peaks found on
    the maps rounded to float16, as the workflow stores them for the prompt stage."""
    scores = predict_scores(model, frame["path"].tolist(), max_side=cfg.cam.train_size)  # type: ignore[arg-type]
    targets = multi_hot(frame["labels"].tolist(), classes).numpy().astype(bool)
    threshold = cfg.cam.test_class_threshold
    every = tuple(sorted({threshold, *thresholds}))
    predicted: dict[float, list[bool]] = {t: [] for t in every}
    labelled: list[bool] = []
    labelled16: list[bool] = []
    correct: dict[float, list[bool]] = {t: [] for t in every}  # predicted class is labelled
    for row in frame.itertuples(index=False):
        sel = gt.box_image_ids == int(row.coco_id)
        image = to_tensor(load_rgb(Path(row.path)))
        res = multiscale_cams(model, image, cfg.cam, labels=list(range(classes)))  # type: ignore[arg-type]
        hits = _top_peak_hits(res.cams, res.class_ids, gt.boxes[sel], gt.labels[sel], cfg)
        hits16 = hits
        if float16:
            rounded = res.cams.astype(np.float16).astype(np.float32)
            hits16 = _top_peak_hits(rounded, res.class_ids, gt.boxes[sel], gt.labels[sel], cfg)
        for c, hit, hit16 in zip(res.class_ids.tolist(), hits, hits16, strict=True):
            if c in row.labels:
                labelled.append(hit)
                labelled16.append(hit16)
            for t in every:
                if res.scores[c] >= t:
                    predicted[t].append(hit)
                    correct[t].append(c in row.labels)
    return {
        "map": multilabel_map(scores, targets, tuple(str(i) for i in range(classes)))["map"],
        "pointing_predicted": float(np.mean(predicted[threshold])) if predicted[threshold] else 0.0,
        "pointing_labelled": float(np.mean(labelled)) if labelled else 0.0,
        **(
            {"pointing_labelled_float16": float(np.mean(labelled16)) if labelled16 else 0.0}
            if float16
            else {}
        ),
        "points_predicted": len(predicted[threshold]),
        "points_labelled": len(labelled),
        "by_threshold": {
            str(t): {
                "pointing_predicted": float(np.mean(predicted[t])) if predicted[t] else 0.0,
                "points_predicted": len(predicted[t]),
                "class_precision": float(np.mean(correct[t])) if correct[t] else 0.0,
                "labelled_classes_found": int(np.sum(correct[t])),
            }
            for t in every
        },
    }


def run_variant(
    cfg: WeaksamConfig,
    manifest: Manifest,
    gt: GroundTruth,
    overrides: dict[str, Any],
    folds: int,
    threads: int,
    thresholds: tuple[float, ...] = (),
) -> dict[str, Any]:
    cam = replace(
        cfg.cam, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    )
    run_cfg = replace(cfg, cam=cam)
    train = manifest.split(cfg.dataset.train_split)
    order = np.random.default_rng(cfg.compute.seed).permutation(len(train))
    parts = np.array_split(order, folds)
    per_fold = []
    t0 = time.perf_counter()
    for f, held in enumerate(parts):
        frame = manifest.frame.copy()
        is_train = frame["split"] == cfg.dataset.train_split
        held_ids = set(train.iloc[held]["image_id"])
        frame.loc[is_train & frame["image_id"].isin(held_ids), "split"] = "held_out"
        fold_manifest = Manifest(frame, manifest.classes, manifest.dataset)
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            model = train_classifier(
                fold_manifest, cfg.dataset.train_split, cam, cfg.assets,
                out=Path(tmp) / "m.pt", work=Path(tmp) / "w.pt", seed=cfg.compute.seed + f,
                log_path=Path(tmp) / "log.tsv",
            )  # fmt: skip
        per_fold.append(
            evaluate_fold(
                model,
                fold_manifest.split("held_out"),
                gt,
                run_cfg,
                len(manifest.classes),
                thresholds,
            )
        )
        print(f"  fold {f}: {json.dumps(per_fold[-1])}", flush=True)
    keys = ("map", "pointing_predicted", "pointing_labelled")
    by_threshold = {
        t: float(np.mean([p["by_threshold"][t]["pointing_predicted"] for p in per_fold]))
        for t in per_fold[0]["by_threshold"]
    }
    return {
        "overrides": overrides,
        "mean": {k: float(np.mean([p[k] for p in per_fold])) for k in keys},
        "pointing_predicted_by_threshold": by_threshold,
        "folds": per_fold,
        "seconds": time.perf_counter() - t0,
    }


# what a variant of the extraction-only mode may change
EXTRACTION_KEYS = ("scales", "flip", "max_side", "border_pad", "cell_alignment")


def run_extraction_variant(
    cfg: WeaksamConfig,
    manifest: Manifest,
    gt: GroundTruth,
    overrides: dict[str, Any],
    classifier: Path,
    threads: int,
) -> dict[str, Any]:
    """One extraction variant with the workflow's trained classifier on the training split."""
    unknown = sorted(set(overrides) - set(EXTRACTION_KEYS))
    if unknown:
        raise SystemExit(f"--classifier variants change extraction keys only, not {unknown}")
    cam = replace(
        cfg.cam, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    )
    torch.set_num_threads(threads)
    state = load_checkpoint(classifier)
    if list(state["classes"]) != list(manifest.classes):
        raise SystemExit(f"{classifier}: trained on {state['classes']}, not {manifest.classes}")
    model = build_classifier(cfg.cam, cfg.assets, len(manifest.classes), pretrained=False)
    model.load_state_dict(state["model"])
    model.eval()
    t0 = time.perf_counter()
    result = evaluate_fold(
        model,
        manifest.split(cfg.dataset.train_split),
        gt,
        replace(cfg, cam=cam),
        len(manifest.classes),
        float16=True,
    )
    return {
        "overrides": overrides,
        "classifier": str(classifier),
        "pointing_labelled": result["pointing_labelled"],
        "pointing_labelled_float16_maps": result["pointing_labelled_float16"],
        "points_labelled": result["points_labelled"],
        "seen_images": {k: result[k] for k in ("map", "pointing_predicted", "points_predicted")},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+", help="config file(s), later ones override")
    ap.add_argument("--variant", action="append", default=[], help="name=JSON of cam keys")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--thresholds",
        type=float_list,
        default=(),
        help="comma-separated cam.test_class_threshold values to judge as well",
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--classifier",
        type=Path,
        default=None,
        help="a trained classifier.pt: judge extraction-only variants on the training split",
    )
    args = ap.parse_args()
    cfg = load_config_files([REPO / "config" / "config.yaml", *args.config])  # as the Snakefile
    results_dir = REPO / "results" / cfg.dataset.name
    manifest = read_manifest(results_dir / "manifest.parquet")
    gt = load_ground_truth(results_dir / "gt" / f"{cfg.dataset.train_split}.json")
    variants = dict(v.split("=", 1) for v in args.variant) or {"config": "{}"}
    if args.classifier is not None:
        out = args.out or REPO / "bench" / "results" / f"tune_cam_extract_{cfg.dataset.name}.json"
        record = variant_record(out, config=args.config, classifier=str(args.classifier))
        for name, text in variants.items():
            print(f"variant {name}: {text}", flush=True)
            record["variants"][name] = run_extraction_variant(
                cfg, manifest, gt, json.loads(text), args.classifier, args.threads
            )
            print(f"variant {name}: {json.dumps(record['variants'][name])}", flush=True)
            out.write_text(json.dumps(record, indent=2) + "\n")
        return
    out = args.out or REPO / "bench" / "results" / f"tune_cam_{cfg.dataset.name}.json"
    record = variant_record(out, config=args.config, folds=args.folds)
    for name, text in variants.items():
        print(f"variant {name}: {text}", flush=True)
        record["variants"][name] = run_variant(
            cfg, manifest, gt, json.loads(text), args.folds, args.threads, args.thresholds
        )
        print(f"variant {name}: {json.dumps(record['variants'][name]['mean'])}", flush=True)
        out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
