"""CAM overlays with peak points: one figure per split, a few images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from weaksam.cam import CAM_STORE_KIND
from weaksam.data.images import load_rgb
from weaksam.data.manifest import Manifest
from weaksam.h5store import StoreReader
from weaksam.io import atomic_path


def cam_overlay_figure(
    cam_path: str,
    prompts: pd.DataFrame,
    manifest: Manifest,
    split: str,
    out: str,
    *,
    num_images: int = 8,
) -> None:
    """Each panel: the image, the max over its kept classes' CAMs (jet, alpha 0.45), and its peak
    points coloured by class; the title lists the kept classes (labels or predictions)."""
    frame = manifest.split(split).head(num_images)
    cols = min(4, max(1, len(frame)))
    rows = max(1, int(np.ceil(len(frame) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    with StoreReader(cam_path, kind=CAM_STORE_KIND) as store:
        source = (
            "image labels" if store.attr("labels_from") == "labels" else "classifier predictions"
        )
        for ax, row in zip(axes.flat, frame.itertuples(), strict=False):
            group = store[str(row.image_id)]
            cams, class_ids = group["cams"][()].astype(np.float32), group["class_ids"][()]
            ax.imshow(load_rgb(Path(row.path)))
            if len(class_ids):
                ax.imshow(cams.max(axis=0), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            peaks = prompts[(prompts["image_id"] == row.image_id) & (prompts["source"] == "peak")]
            for c in class_ids.tolist():
                p = peaks[peaks["class_id"] == c]
                ax.scatter(
                    p["x"],
                    p["y"],
                    s=40,
                    c=[colours(c % 10)],
                    edgecolors="white",
                    linewidths=1.2,
                    label=manifest.classes[c],
                )
            names = ", ".join(manifest.classes[c] for c in class_ids.tolist()) or "no class"
            ax.set_title(f"{row.image_id}: {names}", fontsize=9)
            ax.axis("off")
        for ax in axes.flat[len(frame) :]:
            ax.axis("off")
    fig.suptitle(
        f"{manifest.dataset} / {split}: CAMs (max over kept classes) and peak points; classes from {source}",
        fontsize=11,
    )
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
