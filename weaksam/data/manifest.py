"""The manifest (one row per image) and the COCO ground-truth files.

``manifest.parquet`` columns: ``image_id`` (str), ``coco_id`` (int, the image's id in every COCO
file of this dataset: its 1-based row number), ``path`` (absolute), ``width``, ``height``
(displayed orientation), ``split``, ``labels`` (list of 0-based class ids), ``clear_labels``
(the classes with at least one object that is neither ignored, e.g. VOC difficult, nor a crowd;
``labels`` where a source has no objects). The class list, the dataset name and the format
version are stored in the Parquet schema metadata under ``weaksam``. A manifest written before
``clear_labels`` existed still reads; only ``wsod.exclude_difficult_labels`` needs the column.

COCO files use ``category_id = class_id + 1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from weaksam.data.masks import GtObject
from weaksam.data.records import DatasetError
from weaksam.h5store import shard_slice
from weaksam.io import atomic_path, write_json

MANIFEST_FORMAT_VERSION = 1
MANIFEST_COLUMNS = ("image_id", "coco_id", "path", "width", "height", "split", "labels")


@dataclass
class ImageEntry:
    image_id: str
    path: Path
    width: int
    height: int
    split: str
    labels: list[int]
    objects: list[GtObject] | None
    # classes with an object neither ignored nor crowd; None: the same as labels (no objects)
    clear_labels: list[int] | None = None
    # an instance map was read (VOC SegmentationObject): an object without a mask has no pixels
    # in it (it is not an instance of the mask ground truth), rather than an unknown mask
    segmented: bool = False


@dataclass(frozen=True)
class Manifest:
    frame: pd.DataFrame
    classes: tuple[str, ...]
    dataset: str

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name].reset_index(drop=True)

    def shard(self, name: str, shard: int, shards: int) -> pd.DataFrame:
        """Rows of shard ``shard`` of ``shards`` of split ``name`` (contiguous, in order)."""
        frame = self.split(name)
        return frame.iloc[shard_slice(len(frame), shard, shards)]


def write_manifest(
    path: Path, entries: list[ImageEntry], classes: list[str], *, dataset: str
) -> None:
    table = pa.table(
        {
            "image_id": pa.array([e.image_id for e in entries], pa.string()),
            "coco_id": pa.array(range(1, len(entries) + 1), pa.int64()),
            "path": pa.array([str(Path(e.path).resolve()) for e in entries], pa.string()),
            "width": pa.array([e.width for e in entries], pa.int32()),
            "height": pa.array([e.height for e in entries], pa.int32()),
            "split": pa.array([e.split for e in entries], pa.string()),
            "labels": pa.array([e.labels for e in entries], pa.list_(pa.int32())),
            "clear_labels": pa.array(
                [e.labels if e.clear_labels is None else e.clear_labels for e in entries],
                pa.list_(pa.int32()),
            ),
        }
    )
    meta = {"classes": list(classes), "dataset": dataset, "format_version": MANIFEST_FORMAT_VERSION}
    table = table.replace_schema_metadata({"weaksam": json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest written by ``write_manifest``; fails clearly on anything else."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"{path}: cannot read manifest ({exc})") from exc
    raw_meta = (table.schema.metadata or {}).get(b"weaksam")
    if raw_meta is None:
        raise DatasetError(f"{path}: not a weaksam manifest (no 'weaksam' metadata)")
    meta = json.loads(raw_meta)
    if meta.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise DatasetError(
            f"{path}: manifest format version {meta.get('format_version')}, "
            f"this weaksam reads {MANIFEST_FORMAT_VERSION}"
        )
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: manifest lacks columns {missing}")
    frame = table.to_pandas()
    for column in ("labels", "clear_labels"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: [int(x) for x in v])
    return Manifest(frame=frame, classes=tuple(meta["classes"]), dataset=str(meta["dataset"]))


def coco_categories(classes: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)
    ]


def _annotation(obj: GtObject, ann_id: int, image_id: int) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in obj.box)
    ann: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.class_id + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": obj.area,
        "iscrowd": int(obj.iscrowd),
        "ignore": int(obj.ignore),
    }
    if obj.segmentation is not None:
        ann["segmentation"] = obj.segmentation
    return ann


def write_ground_truth(
    path: Path, entries: list[ImageEntry], classes: list[str], *, split: str, dataset: str
) -> None:
    """Write the COCO instances file of one split (images in manifest order)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for coco_id, entry in enumerate(entries, start=1):
        if entry.split != split:
            continue
        images.append(
            {
                "id": coco_id,
                "file_name": str(Path(entry.path).resolve()),
                "width": entry.width,
                "height": entry.height,
                "image_key": entry.image_id,
                **({"segmented": 1} if entry.segmented else {}),
            }
        )
        for obj in entry.objects or []:
            annotations.append(_annotation(obj, len(annotations) + 1, coco_id))
    data = {
        "info": {"description": f"weaksam ground truth: {dataset} / {split}", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(classes),
    }
    write_json(path, data)
