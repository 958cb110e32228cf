"""A folder of images plus ``labels.csv``: image-level labels only, no boxes.

The CSV has a header with at least ``image`` (a path relative to the images folder) and
``labels`` (class names separated by ``;``, may be empty). An optional ``split`` column assigns
splits; without it the split is drawn by ``seeded_split``. Evaluation stages are skipped for such
a dataset, since there is no ground truth.
"""

from __future__ import annotations

import csv
from pathlib import Path

from weaksam.config import LabelsCsvConfig
from weaksam.data.records import BadInputLog, DatasetError, SourceImage, resolve_inside
from weaksam.data.voc import seeded_split


def parse_labels(field: str) -> list[str]:
    """``"dog; person;"`` -> ``["dog", "person"]`` (order kept, blanks dropped)."""
    return [name.strip() for name in field.split(";") if name.strip()]


def read_labels_csv(
    root: Path,
    cfg: LabelsCsvConfig,
    splits: tuple[str, str],
    log: BadInputLog,
    *,
    split_seed: int,
    test_fraction: float,
) -> list[SourceImage]:
    csv_path = root / cfg.csv
    images_dir = root / cfg.images_dir
    if not csv_path.is_file():
        raise DatasetError(f"labels file {csv_path} not found")
    with csv_path.open(newline="", encoding="utf-8-sig") as f:  # spreadsheets write a BOM
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "image" not in header or "labels" not in header:
            raise DatasetError(f"{csv_path}: header must have 'image' and 'labels', got {header}")
        rows = list(reader)
    records = []
    for line_no, row in enumerate(rows, start=2):
        image_rel = (row.get("image") or "").strip()
        origin = f"{csv_path}:{line_no}"
        if not image_rel:
            raise DatasetError(f"{origin}: empty 'image' field")
        split = (row.get("split") or "").strip()
        if split and split not in splits:
            raise DatasetError(f"{origin}: split {split!r} is neither of {list(splits)}")
        image_id = Path(image_rel).stem
        try:
            path = resolve_inside(images_dir, image_rel, what=origin)
        except DatasetError as exc:  # a path out of the root: skipped and recorded in skip mode
            placeholder = SourceImage(image_id, images_dir / image_rel, split, None, origin=origin)
            log.problem(placeholder, "skipped_image", str(exc))
            continue
        records.append(
            SourceImage(
                image_id=image_id,
                path=path,
                split=split,
                objects=None,
                labels=parse_labels(row.get("labels") or ""),
                origin=origin,
            )
        )
    unassigned = [r.image_id for r in records if not r.split]
    if unassigned:
        split_of = seeded_split(
            unassigned, splits[0], splits[1], seed=split_seed, test_fraction=test_fraction
        )
        for rec in records:
            rec.split = rec.split or split_of[rec.image_id]
    order = {s: i for i, s in enumerate(splits)}
    return sorted(records, key=lambda r: order[r.split])
