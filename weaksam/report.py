"""The figures and tables of the Snakemake report (`snakemake --report results/{name}/report.html`).

Everything is read back from a results folder, so the report shows exactly what the stages wrote:

- ``metrics.html``: one table per stage (classifier mAP and pointing accuracy, proposal recall,
  WSOD AP50 / CorLoc, PGT precision / recall, pseudo-mask IoU, detector and Mask R-CNN AP);
  a stage whose files are absent (no ground truth, not configured) is left out with a note.
- ``recall.png``: proposal recall against the number of proposals, one line per method and IoU.
- ``losses.png``: the training-loss curves of every trained model.
- ``gallery_{stage}.png``: a few images drawn at each stage with ``weaksam.viz.show``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from weaksam.config import WeaksamConfig
from weaksam.data.manifest import read_manifest
from weaksam.evaluation.quality import BOUND_ROWS, stage_figures
from weaksam.io import atomic_path
from weaksam.viz.show import draw_stage

GALLERY_TITLES = {
    "cam": "Class activation maps (training images)",
    "prompts": "Point prompts: CAM peaks and grid (training images)",
    "proposals": "WeakSAM proposals, top 20 (training images)",
    "pgt": "Pseudo ground truth against ground truth (training images)",
    "masks": "SAM masks of the pseudo boxes (training images)",
    "detections": "Retrained Faster R-CNN detections (test images)",
    "instances": "Mask R-CNN instances (test images)",
}


def _json(path: Path) -> Any:
    with path.open() as f:
        return json.load(f)


def _variant(results: Path, path: Path, prefix: str) -> str:
    """``wsod/selective_search/mist/metrics_test.json`` -> ``selective_search/mist``."""
    return str(path.parent.relative_to(results / prefix))


def classifier_table(results: Path) -> pd.DataFrame:
    rows = []
    metrics = results / "cam" / "classifier_metrics.json"
    if metrics.exists():
        for split, m in _json(metrics).items():
            row: dict[str, Any] = {"split": split, "images": m["num_images"], "mAP": m["map"]}
            pointing = results / "prompts" / f"{split}.pointing.json"
            if pointing.exists():
                p = _json(pointing)
                row["pointing (all peaks)"] = p["all_peaks"]["accuracy"]
                row["pointing (top peak)"] = p["top_peak"]["accuracy"]
            rows.append(row)
    return pd.DataFrame(rows)


def recall_files(results: Path) -> list[Path]:
    return sorted((results / "proposals").rglob("*.recall.json"))


def proposals_table(results: Path) -> pd.DataFrame:
    rows = []
    for path in recall_files(results):
        r = _json(path)
        row: dict[str, Any] = {"method": r["method"], "split": r["split"]}
        for iou, values in r["recall"].items():
            for n, v in zip(r["n"], values, strict=True):
                row[f"R@{iou} N={n}"] = v
        row["MABO"] = r["mabo"]
        row["boxes / image"] = r["boxes_per_image"]
        rows.append(row)
    return pd.DataFrame(rows)


def detection_table(results: Path, prefix: str) -> pd.DataFrame:
    rows = []
    for path in sorted((results / prefix).rglob("metrics_*.json")):
        m = _json(path)
        row: dict[str, Any] = {
            "model": _variant(results, path, prefix),
            "split": path.stem.removeprefix("metrics_"),
            "images": m["num_images"],
        }
        if "voc" in m:
            row["AP50 (11-pt)"] = m["voc"]["map11"]
            row["AP50 (area)"] = m["voc"]["map_area"]
        if m.get("corloc"):
            row["CorLoc"] = m["corloc"]["corloc"]
        for kind in ("coco_bbox", "coco_segm"):
            for key in ("AP", "AP25", "AP50", "AP70", "AP75"):
                if key in m.get(kind, {}):
                    row[f"{kind.removeprefix('coco_')} {key}"] = m[kind][key]
        rows.append(row)
    return pd.DataFrame(rows)


def pgt_table(results: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((results / "pgt").glob("*/quality.json")):
        q = _json(path)
        for mode in ("adaptive", "top1"):
            if mode in q:
                rows.append(
                    {
                        "head": path.parent.name,
                        "mode": mode + (" (used)" if q.get("mode") == mode else ""),
                        "precision": q[mode]["precision"],
                        "recall": q[mode]["recall"],
                        "boxes / image": q[mode]["boxes_per_image"],
                    }
                )
    return pd.DataFrame(rows)


def masks_table(results: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((results / "wsis").glob("*/quality.json")):
        q = _json(path)
        row: dict[str, Any] = {"head": path.parent.name, "masks": q["masks"]}
        row["mean IoU"] = q["mean_iou"]
        for name, c in q.get("per_class", {}).items():
            row[f"IoU {name}"] = c["mean_iou"]
        rows.append(row)
    return pd.DataFrame(rows)


BOUND_NAMES = {
    "bound_gt_box_mask_iou_test": "SAM prompted with ground-truth boxes: mask IoU (test)",
    "bound_corloc_trainval": "head trained on proposals + ground-truth boxes",
    "bound_ap50_test": "same stage with its input replaced by ground truth",
    "bound_precision": "PGT from a perfect ranking of the same detections",
    "bound_recall": "PGT from a perfect ranking of the same detections",
    "bound_mask_iou_trainval": "SAM prompted with ground-truth boxes (training split)",
    "bound_mask_ap50_test": "Mask R-CNN trained on ground-truth masks",
}


def bounds_table(results: Path, cfg: WeaksamConfig | None) -> pd.DataFrame:
    """Each stage's figure beside its upper bound (``snakemake oracles``), so the stage that
    loses the most stands out."""
    if cfg is None:
        return pd.DataFrame()
    figures = stage_figures(results, cfg)
    rows = []
    for stage, key, bound in BOUND_ROWS:
        for head in cfg.wsod.heads if "{head}" in stage else [""]:
            name = stage.format(head=head)
            value = figures.get(name, {}).get(key)
            limit = figures.get(name, {}).get(bound)
            if value is None and limit is None:
                continue
            rows.append(
                {
                    "stage": name,
                    "figure": key,
                    "value": value,
                    "upper bound": limit,
                    "bound from": BOUND_NAMES.get(bound, bound),
                }
            )
    return pd.DataFrame(rows)


TABLES = (
    (
        "Classifier and CAM peaks",
        classifier_table,
        "image-level mAP of the CAM classifier; "
        "pointing: share of CAM peaks inside a ground-truth box of their class",
    ),
    (
        "Proposals",
        proposals_table,
        "recall of ground-truth boxes at IoU 0.5 / 0.7 by the top N "
        "proposals; MABO: mean best overlap",
    ),
    (
        "WSOD",
        lambda r: detection_table(r, "wsod"),
        "AP50 of each head (11-point and area); CorLoc on the training split",
    ),
    (
        "Pseudo ground truth",
        pgt_table,
        "precision and recall at IoU 0.5 against the training "
        "split's ground truth, adaptive PGT against the top-1 box per class",
    ),
    (
        "Retrained Faster R-CNN",
        lambda r: detection_table(r, "detector"),
        "trained on the pseudo ground truth; no_roi_drop is the ablation",
    ),
    (
        "DINO-style DETR",
        lambda r: detection_table(r, "dino"),
        "trained on the pseudo ground truth (retrain.detector: dino), beside Faster R-CNN",
    ),
    (
        "SAM pseudo masks",
        masks_table,
        "mean IoU of the box-prompted SAM masks against the "
        "ground-truth mask each pseudo box matches best",
    ),
    (
        "Mask R-CNN",
        lambda r: detection_table(r, "maskrcnn"),
        "trained on the SAM pseudo masks; box and mask AP through pycocotools",
    ),
    (
        "Mask2Former",
        lambda r: detection_table(r, "mask2former"),
        "trained on the SAM pseudo masks (wsis.segmenter: mask2former), beside Mask R-CNN",
    ),
)


def metrics_html(results: Path, out: str | Path, cfg: WeaksamConfig | None = None) -> None:
    parts = [
        "<html><head><meta charset='utf-8'><style>"
        "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse;margin-bottom:6px}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right} th{background:#eee}"
        "</style></head><body>"
        f"<h2>weaksam metrics: {html.escape(results.name)}</h2>"
    ]
    tables: list[tuple[str, Any, str]] = [
        (
            "Each stage against its upper bound",
            lambda r: bounds_table(r, cfg),
            "every bound replaces the stage's input by ground truth (snakemake oracles, or "
            "evaluation.stage_bounds: true); empty until the bounds are built",
        ),
        *TABLES,
    ]
    for title, make, caption in tables:
        frame = make(results)
        parts.append(f"<h3>{html.escape(title)}</h3><p>{html.escape(caption)}</p>")
        if frame.empty:
            parts.append(
                "<p><i>not in this results folder (no ground truth, or the stage is "
                "not configured)</i></p>"
            )
        else:
            parts.append(frame.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    parts.append("</body></html>")
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(parts))


def recall_figure(results: Path, out: str | Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for path in recall_files(results):
        r = _json(path)
        n = [int(v) if v != "all" else None for v in r["n"]]
        last = max(v for v in n if v is not None) * 2
        xs = [v if v is not None else max(last, r["boxes_per_image"]) for v in n]
        for ax, (iou, values) in zip(axes, r["recall"].items(), strict=False):
            ax.plot(xs, values, marker="o", label=f"{r['method']} ({r['split']})")
            ax.set_title(f"recall at IoU {iou}")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("proposals per image (last point: all)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall of ground-truth boxes")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def train_logs(results: Path) -> list[tuple[str, Path]]:
    logs = [("CAM classifier", results / "cam" / "train_log.tsv")]
    for prefix in ("wsod", "detector", "maskrcnn"):
        for path in sorted((results / prefix).rglob("train_log.tsv")):
            logs.append((f"{prefix} {_variant(results, path, prefix)}", path))
    return [(name, p) for name, p in logs if p.exists()]


def loss_figure(results: Path, out: str | Path) -> None:
    logs = train_logs(results)
    cols = 3
    rows = max(1, -(-len(logs) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, path) in zip(axes.flat, logs, strict=False):
        log = pd.read_csv(path, sep="\t")
        ax.plot(log["step"], log["loss"], lw=0.8, alpha=0.4, color="C0")
        window = max(1, len(log) // 20)
        ax.plot(log["step"], log["loss"].rolling(window, min_periods=1).mean(), color="C0")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(logs) :]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def gallery(results: Path, stage: str, out: str | Path, *, head: str, images: int = 4) -> str:
    """``images`` images of the split the stage is about, drawn side by side; returns the
    caption of the stage."""
    manifest = read_manifest(results / "manifest.parquet")
    frame = manifest.frame
    on_test = stage in ("detections", "instances")
    splits = list(dict.fromkeys(frame["split"]))
    split = splits[-1] if on_test and len(splits) > 1 else splits[0]
    rows = frame[frame["split"] == split].head(images)
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4), squeeze=False)
    caption = ""
    for ax, (_, row) in zip(axes.flat, rows.iterrows(), strict=True):
        if stage == "detections":
            caption = draw_stage(
                ax, results, manifest, row, "detections", head=head, detector="detector"
            )
        elif stage == "instances":
            caption = draw_stage(
                ax, results, manifest, row, "detections", head=head, detector="maskrcnn"
            )
        else:
            caption = draw_stage(ax, results, manifest, row, stage, head=head)
        ax.set_title(f"{row['image_id']}: {caption}", fontsize=7, wrap=True)
    fig.suptitle(GALLERY_TITLES[stage], fontsize=11)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return caption
