"""Point prompts from CAMs: peaks per class (``source = "peak"``) and the spatial grid
(``source = "grid"``, ``class_id = -1``, ``score = NaN``).

Output table ``prompts/{split}.parquet``: ``image_id, x, y, class_id, score, source``; x / y are
pixel coordinates in the original image (peaks at integer pixels, grid at cell centres); it is
written and read by weaksam.cam.prompt_table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from weaksam.cam import CAM_STORE_KIND
from weaksam.cam.peaks import grid_points, peak_points
from weaksam.cam.prompt_table import PROMPT_COLUMNS
from weaksam.config import PromptsConfig
from weaksam.data.manifest import Manifest
from weaksam.h5store import StoreReader


def image_prompts(
    image_id: str,
    cams: np.ndarray,
    class_ids: np.ndarray,
    width: int,
    height: int,
    cfg: PromptsConfig,
) -> pd.DataFrame:
    """Prompts of one image from its (K, H, W) normalised CAMs."""
    parts = []
    for k, class_id in enumerate(class_ids.tolist()):
        pts, scores = peak_points(
            cams[k].astype(np.float32),
            kernel=cfg.peak_kernel,
            top_k=cfg.top_k,
            threshold=cfg.peak_threshold,
        )
        parts.append(
            pd.DataFrame(
                {
                    "x": pts[:, 0].astype(np.float32),
                    "y": pts[:, 1].astype(np.float32),
                    "class_id": class_id,
                    "score": scores,
                    "source": "peak",
                }
            )
        )
    if cfg.points_per_side > 0:
        grid = grid_points(width, height, cfg.points_per_side)
        parts.append(
            pd.DataFrame(
                {
                    "x": grid[:, 0],
                    "y": grid[:, 1],
                    "class_id": -1,
                    "score": np.float32(np.nan),
                    "source": "grid",
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(
                    PROMPT_COLUMNS,
                    ("str", "float32", "float32", "int32", "float32", "str"),
                    strict=True,
                )
            }
        )
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "image_id", image_id)
    return df


def build_prompts(
    cam_path: str,
    manifest: Manifest,
    split: str,
    cfg: PromptsConfig,
    *,
    cam_digest: str | None = None,
) -> pd.DataFrame:
    frame = manifest.split(split)
    tables = []
    with StoreReader(cam_path, kind=CAM_STORE_KIND, config_digest=cam_digest) as store:
        for row in frame.itertuples():
            group = store[str(row.image_id)]
            tables.append(
                image_prompts(
                    str(row.image_id),
                    group["cams"][()],
                    group["class_ids"][()],
                    int(row.width),
                    int(row.height),
                    cfg,
                )
            )
    df = (
        pd.concat(tables, ignore_index=True)
        if tables
        else image_prompts(
            "", np.zeros((0, 1, 1)), np.zeros(0, np.int64), 1, 1, PromptsConfig(points_per_side=0)
        )
    )
    return df.astype(
        {
            "image_id": str,
            "x": "float32",
            "y": "float32",
            "class_id": "int32",
            "score": "float32",
            "source": str,
        }
    )
