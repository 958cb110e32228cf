"""COCO instances JSON reader (boxes, polygon and RLE masks, crowd annotations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from weaksam.config import CocoConfig
from weaksam.data.records import (
    BadInputLog,
    DatasetError,
    SourceImage,
    SourceObject,
    resolve_inside,
)
from weaksam.data.voc import seeded_split


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8-sig") as f:  # a byte-order mark is accepted
            data = json.load(f)
    except FileNotFoundError as exc:
        raise DatasetError(f"COCO annotation file {path} not found") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing list {key!r} (not a COCO instances file)")
    return data


def _require(entry: dict[str, Any], keys: tuple[str, ...], what: str, path: Path) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DatasetError(f"{path}: {what} lacks {missing}: {str(entry)[:200]}")


def coco_category_names(data: dict[str, Any], path: Path) -> dict[int, str]:
    """Category id -> name, in the file's id order."""
    names: dict[int, str] = {}
    for cat in data["categories"]:
        _require(cat, ("id", "name"), "category", path)
        names[int(cat["id"])] = str(cat["name"])
    return dict(sorted(names.items()))


def _object(ann: dict[str, Any], name: str, path: Path) -> SourceObject:
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4):
        raise DatasetError(f"{path}: annotation {ann.get('id')}: bbox must be [x, y, w, h]")
    x, y, w, h = (float(v) for v in bbox)
    seg = ann.get("segmentation")
    return SourceObject(
        class_name=name,
        box=(x, y, x + w, y + h),
        ignore=bool(ann.get("ignore", 0)),
        iscrowd=bool(ann.get("iscrowd", 0)),
        segmentation=seg if seg else None,
        area=float(ann["area"]) if "area" in ann else None,
    )


def read_coco_split(
    json_path: Path, images_root: Path, split: str, log: BadInputLog
) -> tuple[list[SourceImage], list[str]]:
    """Read one split. Returns records (file order) and the category names in id order."""
    data = _load_json(json_path)
    cat_names = coco_category_names(data, json_path)
    records: dict[Any, SourceImage] = {}
    skipped: set[Any] = set()  # image ids left out (recorded), whose annotations go with them
    for img in data["images"]:
        _require(img, ("id", "file_name"), "image", json_path)
        file_name = str(img["file_name"])
        if (
            img["id"] in records or img["id"] in skipped
        ):  # its annotations could belong to either image
            raise DatasetError(
                f"{json_path}: image id {img['id']} is used twice (by {file_name} and an earlier "
                "image); image ids must be unique"
            )
        size = (
            (int(img["width"]), int(img["height"])) if "width" in img and "height" in img else None
        )
        origin = f"{json_path} image id {img['id']}"
        try:
            path = resolve_inside(images_root, file_name, what=origin)
        except DatasetError as exc:  # a path out of the root: skipped and recorded in skip mode
            placeholder = SourceImage(
                Path(file_name).stem, images_root / file_name, split, None, origin=origin
            )
            log.problem(placeholder, "skipped_image", str(exc))
            skipped.add(img["id"])
            continue
        records[img["id"]] = SourceImage(
            image_id=Path(file_name).stem,
            path=path,
            split=split,
            objects=[],
            annotated_size=size,
            origin=origin,
        )
    for ann in data["annotations"]:
        _require(ann, ("image_id", "category_id", "bbox"), "annotation", json_path)
        if ann["image_id"] in skipped:
            continue
        rec = records.get(ann["image_id"])
        if rec is None:
            raise DatasetError(
                f"{json_path}: annotation {ann.get('id')} refers to unknown image_id {ann['image_id']}"
            )
        name = cat_names.get(int(ann["category_id"]))
        assert rec.objects is not None
        if name is None:
            log.problem(
                rec,
                "dropped_object",
                f"annotation {ann.get('id')}: category_id {ann['category_id']} not in categories",
            )
            continue
        rec.objects.append(_object(ann, name, json_path))
    return list(records.values()), list(cat_names.values())


def read_coco(
    root: Path,
    cfg: CocoConfig,
    splits: tuple[str, str],
    log: BadInputLog,
    *,
    split_seed: int = 0,
    test_fraction: float = 0.3,
) -> tuple[list[SourceImage], list[str]]:
    """Read the train and test splits named in ``cfg`` (paths relative to ``root``). Without a
    test JSON, the train JSON's images are split by ``seeded_split``."""
    if cfg.train_json is None or cfg.train_images is None:
        raise DatasetError("dataset.coco: the train split needs train_json and train_images")
    records, names = read_coco_split(root / cfg.train_json, root / cfg.train_images, splits[0], log)
    if cfg.test_json is None:
        split_of = seeded_split(
            [r.image_id for r in records],
            splits[0],
            splits[1],
            seed=split_seed,
            test_fraction=test_fraction,
        )
        for rec in records:
            rec.split = split_of[rec.image_id]
        order = {s: i for i, s in enumerate(splits)}
        return sorted(records, key=lambda r: order[r.split]), names
    if cfg.test_images is None:
        raise DatasetError("dataset.coco: test_json needs test_images")
    recs, cats = read_coco_split(root / cfg.test_json, root / cfg.test_images, splits[1], log)
    return records + recs, names + [c for c in cats if c not in names]
