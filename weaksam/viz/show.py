"""``weaksam show``: one image at one stage, drawn from a results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from weaksam.cam import CAM_STORE_KIND
from weaksam.data.images import load_rgb
from weaksam.data.manifest import Manifest, read_manifest
from weaksam.data.masks import segmentation_to_mask
from weaksam.evaluation.cocofiles import xywh_to_xyxy
from weaksam.h5store import StoreReader
from weaksam.io import atomic_path
from weaksam.proposals.store import ProposalReader

STAGES = ("cam", "prompts", "proposals", "pgt", "masks", "detections")
COLOURS = plt.get_cmap("tab10")


def _boxes(
    ax: Axes,
    boxes: np.ndarray,
    classes: list[int],
    names: tuple[str, ...],
    *,
    dashed: bool = False,
    labels: list[str] | None = None,
) -> None:
    for k, (b, c) in enumerate(zip(boxes, classes, strict=True)):
        colour = COLOURS(c % 10) if c >= 0 else "white"
        ax.add_patch(
            Rectangle(
                (b[0], b[1]),
                b[2] - b[0],
                b[3] - b[1],
                fill=False,
                lw=1.5,
                ec=colour,
                ls="--" if dashed else "-",
            )
        )
        text = labels[k] if labels else (names[c] if c >= 0 else "")
        if text:
            ax.text(
                b[0],
                b[1],
                text,
                fontsize=7,
                color="white",
                bbox={"facecolor": colour, "alpha": 0.7, "pad": 1},
            )


def _coco_boxes(anns: list[dict[str, Any]]) -> np.ndarray:
    return xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64))


def _ground_truth(results: Path, split: str, coco_id: int) -> list[dict[str, Any]]:
    path = results / "gt" / f"{split}.json"
    if not path.is_file():
        return []
    with path.open() as f:
        return [a for a in json.load(f)["annotations"] if int(a["image_id"]) == coco_id]


def show(
    results: str | Path,
    image_id: str,
    stage: str,
    out: str | Path,
    *,
    head: str = "mist",
    detector: str = "wsod",
    top: int = 20,
) -> str:
    """Draw ``image_id`` at ``stage`` into ``out`` (PNG); returns the caption."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
    results = Path(results)
    manifest: Manifest = read_manifest(results / "manifest.parquet")
    rows = manifest.frame[manifest.frame["image_id"] == image_id]
    if rows.empty:
        raise ValueError(f"image {image_id!r} is not in {results / 'manifest.parquet'}")
    row = rows.iloc[0]
    height, width = int(row["height"]), int(row["width"])
    fig, ax = plt.subplots(figsize=(7, 7 * height / width))
    caption = draw_stage(ax, results, manifest, row, stage, head=head, detector=detector, top=top)
    ax.set_title(f"{image_id} ({row['split']}): {caption}", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return caption


def _mask_overlay(ax: Axes, anns: list[dict[str, Any]], height: int, width: int) -> None:
    overlay = np.zeros((height, width, 4))
    for a in anns:
        m = segmentation_to_mask(a["segmentation"], height, width)
        overlay[m] = (*COLOURS((int(a["category_id"]) - 1) % 10)[:3], 0.5)
    ax.imshow(overlay)


def draw_stage(
    ax: Axes,
    results: Path,
    manifest: Manifest,
    row: pd.Series,
    stage: str,
    *,
    head: str = "mist",
    detector: str = "wsod",
    top: int = 20,
) -> str:
    """Draw one manifest row at ``stage`` on ``ax``; returns the caption."""
    image_id = str(row["image_id"])
    split, coco_id, names = str(row["split"]), int(row["coco_id"]), manifest.classes
    image = load_rgb(Path(row["path"]))
    ax.imshow(image)
    ax.axis("off")
    gt = _ground_truth(results, split, coco_id)

    if stage == "cam":
        with StoreReader(results / "cam" / f"{split}.h5", kind=CAM_STORE_KIND) as store:
            g = store[image_id]
            cams, ids = g["cams"][()].astype(np.float32), g["class_ids"][()].tolist()
        if ids:
            ax.imshow(cams.max(axis=0), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        caption = f"CAM (max over {', '.join(names[c] for c in ids) or 'no class'})"
    elif stage == "prompts":
        prompts = pd.read_parquet(results / "prompts" / f"{split}.parquet")
        p = prompts[prompts["image_id"] == image_id]
        for src, marker in (("grid", "+"), ("peak", "o")):
            q = p[p["source"] == src]
            colours = [COLOURS(int(c) % 10) if c >= 0 else "white" for c in q["class_id"]]
            edge = "black" if marker == "o" else None  # '+' is an unfilled marker: no edge
            ax.scatter(
                q["x"], q["y"], c=colours, marker=marker, s=50, edgecolors=edge, linewidths=0.5
            )
        caption = f"prompts: {int((p['source'] == 'peak').sum())} peaks (o, class colour), {int((p['source'] == 'grid').sum())} grid points (+)"
    elif stage == "proposals":
        with ProposalReader(results / "proposals" / f"{split}.h5") as reader:
            props = reader.load(image_id, int(row["width"]), int(row["height"]))
        order = np.argsort(-props.scores, kind="stable")[:top]
        _boxes(ax, props.boxes[order], [-1] * len(order), names)
        _boxes(ax, _coco_boxes(gt), [int(a["category_id"]) - 1 for a in gt], names, dashed=True)
        caption = f"top {len(order)} of {len(props.boxes)} WeakSAM proposals (white) and ground truth (dashed)"
    elif stage in ("pgt", "masks"):
        name = "pgt/{}/pgt.json" if stage == "pgt" else "wsis/{}/masks.json"
        with (results / name.format(head)).open() as f:
            anns = [a for a in json.load(f)["annotations"] if int(a["image_id"]) == coco_id]
        if stage == "masks":
            _mask_overlay(ax, anns, image.shape[0], image.shape[1])
        _boxes(
            ax,
            _coco_boxes(anns),
            [int(a["category_id"]) - 1 for a in anns],
            names,
            labels=[f"{names[int(a['category_id']) - 1]} {a.get('score', 1):.2f}" for a in anns],
        )
        _boxes(ax, _coco_boxes(gt), [int(a["category_id"]) - 1 for a in gt], names, dashed=True)
        caption = f"{'pseudo ground truth' if stage == 'pgt' else 'SAM masks of the pseudo boxes'} ({head}) and ground truth (dashed)"
    else:
        folder = {
            "wsod": f"wsod/{head}",
            "detector": f"detector/{head}",
            "maskrcnn": f"maskrcnn/{head}",
        }[detector]
        with (results / folder / f"detections_{split}.json").open() as f:
            dets = sorted(
                (d for d in json.load(f) if int(d["image_id"]) == coco_id),
                key=lambda d: -d["score"],
            )[:top]
        dets = [d for d in dets if d["score"] >= 0.05] or dets[:3]
        with_masks = [d for d in dets if "segmentation" in d]
        if with_masks:
            _mask_overlay(ax, with_masks, image.shape[0], image.shape[1])
        _boxes(
            ax,
            _coco_boxes(dets),
            [int(d["category_id"]) - 1 for d in dets],
            names,
            labels=[f"{names[int(d['category_id']) - 1]} {d['score']:.2f}" for d in dets],
        )
        _boxes(ax, _coco_boxes(gt), [int(a["category_id"]) - 1 for a in gt], names, dashed=True)
        caption = f"{detector} ({head}) detections (score >= 0.05, at most {top}) and ground truth (dashed)"
    return caption
