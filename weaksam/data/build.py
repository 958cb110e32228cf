"""Check every source record the same way and write the manifest and COCO ground truth.

Outputs (DESIGN.md section 3), all under one dataset folder:

- ``manifest.parquet``: ``image_id, coco_id, path, width, height, split, labels,
  clear_labels``;
- ``skipped.tsv``: every bad input skipped and every fix applied (always written);
- ``gt/{split}.json``: COCO instances, only when the source has boxes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from weaksam.config import DatasetConfig, VocConfig
from weaksam.data import masks as mask_utils
from weaksam.data.coco import read_coco
from weaksam.data.images import (
    SWAPPING_ORIENTATIONS,
    BadImageError,
    ImageInfo,
    orient_boxes,
    orient_mask,
    probe_image,
)
from weaksam.data.labels_csv import read_labels_csv
from weaksam.data.manifest import ImageEntry, write_ground_truth, write_manifest
from weaksam.data.records import BadInputLog, DatasetError, SourceImage, SourceObject
from weaksam.data.voc import read_voc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSummary:
    classes: tuple[str, ...]
    images_per_split: dict[str, int]
    objects_per_split: dict[str, int]
    issues: int


def read_source(
    cfg: DatasetConfig, log: BadInputLog, root: Path | None = None
) -> tuple[list[SourceImage], list[str] | None]:
    """Dispatch to the reader of ``cfg.format``. Returns records and a preferred class order."""
    base = Path(root if root is not None else cfg.root or ".")
    if cfg.format in ("shapes", "voc"):
        # shapes is written in VOC devkit layout by its generator
        voc = (
            VocConfig(layout="devkit", one_based=True, segmentation=True)
            if cfg.format == "shapes"
            else cfg.voc
        )
        recs = read_voc(
            base, voc, cfg.splits, log, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction
        )
        return recs, list(cfg.shapes.classes) if cfg.format == "shapes" else None
    if cfg.format == "coco":
        return read_coco(
            base,
            cfg.coco,
            cfg.splits,
            log,
            split_seed=cfg.split_seed,
            test_fraction=cfg.test_fraction,
        )
    recs = read_labels_csv(
        base,
        cfg.labels_csv,
        cfg.splits,
        log,
        split_seed=cfg.split_seed,
        test_fraction=cfg.test_fraction,
    )
    return recs, None


def _apply_aliases(records: list[SourceImage], aliases: dict[str, str]) -> None:
    """Rename class names as written to the classes they stand for (``dataset.class_aliases``)."""
    if not aliases:
        return
    for rec in records:
        for obj in rec.objects or []:
            obj.class_name = aliases.get(obj.class_name, obj.class_name)
        rec.labels = list(dict.fromkeys(aliases.get(name, name) for name in rec.labels))


def _near_duplicates(names: set[str]) -> list[list[str]]:
    """Groups of names that differ only in case, spaces, '-' or '_'."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        key = "".join(ch for ch in name.casefold() if ch not in " _-\t")
        groups.setdefault(key, []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def _class_list(
    cfg: DatasetConfig,
    records: list[SourceImage],
    preferred: list[str] | None,
    log: BadInputLog,
    origin: str,
) -> list[str]:
    if cfg.classes is not None:
        return list(cfg.classes)
    names = {o.class_name for r in records for o in (r.objects or [])}
    names |= {label for r in records for label in r.labels}
    if preferred is not None and cfg.format != "coco":
        return preferred  # the generator's own list
    if preferred is not None:
        # a COCO category no object uses would be a class with no examples: dropped, recorded
        unused = [c for c in preferred if c not in names]
        for name in unused:
            log.record(
                SourceImage("-", Path(origin), "-", None, origin=origin),
                "dropped_class",
                f"category {name!r} has no objects; left out of the class list",
            )
        return [c for c in preferred if c in names]
    if not names:
        raise DatasetError("the dataset names no classes at all")
    clashes = _near_duplicates(names)
    if clashes:
        listed = "; ".join(", ".join(repr(n) for n in g) for g in clashes)
        raise DatasetError(
            f"class names that differ only in case or spaces: {listed}. Map them to one name "
            "with dataset.class_aliases (e.g. {Circle: circle}) or list the classes in "
            "dataset.classes"
        )
    return sorted(names)


def _annotation_frame(rec: SourceImage, info: ImageInfo, log: BadInputLog) -> int | None:
    """Which EXIF orientation to apply to the annotations: 1 (none), info.orientation, or None
    when the annotated size fits neither the displayed nor the stored image."""
    if rec.annotated_size is None or rec.annotated_size == (info.width, info.height):
        return 1
    if (
        rec.annotated_size == (info.raw_width, info.raw_height)
        and info.orientation in SWAPPING_ORIENTATIONS
    ):
        log.record(
            rec,
            "rotated_annotation",
            f"annotation is in the stored frame; EXIF orientation {info.orientation} applied",
        )
        return info.orientation
    log.problem(
        rec,
        "skipped_image",
        f"annotation says {rec.annotated_size[0]}x{rec.annotated_size[1]} but the image is "
        f"{info.width}x{info.height}",
    )
    return None


def _instance_masks(
    rec: SourceImage, info: ImageInfo, orientation: int, log: BadInputLog
) -> np.ndarray | None:
    """The (H, W) instance-index map of a VOC SegmentationObject PNG, in displayed orientation."""
    if rec.mask_path is None:
        return None
    with Image.open(rec.mask_path) as m:
        if m.mode not in ("P", "L"):
            log.record(
                rec,
                "dropped_object",
                f"mask {rec.mask_path} has mode {m.mode}, expected an indexed (P) PNG; masks not used",
            )
            return None
        index_map = np.asarray(m)
    index_map = orient_mask(index_map, orientation)
    if index_map.shape != (info.height, info.width):
        log.record(
            rec,
            "dropped_object",
            f"mask {rec.mask_path} has shape {index_map.shape}, image is {info.height}x{info.width}; masks not used",
        )
        return None
    return index_map


def _check_object(
    rec: SourceImage,
    k: int,
    obj: SourceObject,
    info: ImageInfo,
    orientation: int,
    class_index: dict[str, int],
    log: BadInputLog,
) -> tuple[int, np.ndarray] | None:
    """Class id and clipped XYXY box of one object, or None when it is unusable."""
    if obj.class_name not in class_index:
        log.problem(
            rec, "dropped_object", f"object {k}: class {obj.class_name!r} is not in the class list"
        )
        return None
    raw = np.asarray(obj.box, dtype=np.float64)
    if not np.all(np.isfinite(raw)):
        log.problem(rec, "dropped_object", f"object {k}: box {obj.box} is not finite")
        return None
    box = (
        orient_boxes(raw[None], orientation, info.raw_width, info.raw_height)[0]
        if orientation != 1
        else raw
    )
    clipped = np.clip(box, 0, [info.width, info.height, info.width, info.height])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        log.problem(
            rec,
            "dropped_object",
            f"object {k} ({obj.class_name}): box {list(obj.box)} is empty or outside the {info.width}x{info.height} image",
        )
        return None
    if not np.allclose(clipped, box):
        log.record(
            rec,
            "clipped_box",
            f"object {k} ({obj.class_name}): box {list(obj.box)} clipped to the image",
        )
    return class_index[obj.class_name], clipped.astype(np.float32)


def check_record(
    rec: SourceImage, cfg: DatasetConfig, class_index: dict[str, int], log: BadInputLog
) -> ImageEntry | None:
    """Validate one record; returns the manifest/GT entry, or None when it was skipped."""
    try:
        info = probe_image(rec.path, verify=cfg.verify_images)
    except BadImageError as exc:
        log.problem(rec, "skipped_image", str(exc))
        return None
    if min(info.width, info.height) < cfg.min_image_side:
        log.problem(
            rec,
            "skipped_image",
            f"image is {info.width}x{info.height}, smaller than dataset.min_image_side={cfg.min_image_side}",
        )
        return None
    entry = ImageEntry(
        rec.image_id, rec.path, info.width, info.height, rec.split, labels=[], objects=None
    )
    if rec.objects is None:
        for name in rec.labels:
            if name not in class_index:
                log.problem(rec, "dropped_object", f"label {name!r} is not in the class list")
            elif class_index[name] not in entry.labels:
                entry.labels.append(class_index[name])
    else:
        orientation = _annotation_frame(rec, info, log)
        if orientation is None:
            return None
        index_map = _instance_masks(rec, info, orientation, log)
        entry.segmented = index_map is not None
        entry.objects = []
        for k, obj in enumerate(rec.objects):
            checked = _check_object(rec, k, obj, info, orientation, class_index, log)
            if checked is None:
                continue
            seg, area = mask_utils.object_segmentation(
                obj, k, checked[1], index_map, info, orientation
            )
            entry.objects.append(
                mask_utils.GtObject(checked[0], checked[1], obj.ignore, obj.iscrowd, seg, area)
            )
        entry.labels = sorted({o.class_id for o in entry.objects})
        entry.clear_labels = sorted(
            {o.class_id for o in entry.objects if not (o.ignore or o.iscrowd)}
        )
    entry.labels.sort()
    if not entry.labels and rec.split == cfg.train_split:
        log.problem(rec, "skipped_image", "no labels: a training image needs at least one class")
        return None
    return entry


def build_dataset(
    cfg: DatasetConfig, out_dir: Path, *, source_root: Path | None = None
) -> DatasetSummary:
    """Read, check and write one dataset into ``out_dir`` (see the module docstring)."""
    log = BadInputLog(cfg.on_bad_image)
    records, preferred = read_source(cfg, log, source_root)
    _apply_aliases(records, cfg.class_aliases)
    if preferred is not None:
        preferred = list(dict.fromkeys(cfg.class_aliases.get(c, c) for c in preferred))
    origin = str(cfg.root or source_root or "")
    classes = _class_list(cfg, records, preferred, log, origin)
    class_index = {name: i for i, name in enumerate(classes)}
    seen: dict[str, SourceImage] = {}
    entries: list[ImageEntry] = []
    for rec in records:
        if rec.image_id in seen:
            first = seen[rec.image_id]
            log.problem(
                rec,
                "skipped_image",
                f"duplicate image id, already read from {first.origin or first.path} ({first.split})",
            )
            continue
        seen[rec.image_id] = rec
        entry = check_record(rec, cfg, class_index, log)
        if entry is not None:
            entries.append(entry)
    for split in cfg.splits:
        if not any(e.split == split for e in entries):
            raise DatasetError(f"split {split!r} has no usable images")
    out_dir.mkdir(parents=True, exist_ok=True)
    log.write_tsv(out_dir / "skipped.tsv")
    write_manifest(out_dir / "manifest.parquet", entries, classes, dataset=cfg.name)
    if cfg.has_ground_truth:
        for split in cfg.splits:
            write_ground_truth(
                out_dir / "gt" / f"{split}.json", entries, classes, split=split, dataset=cfg.name
            )
    summary = DatasetSummary(
        classes=tuple(classes),
        images_per_split={s: sum(e.split == s for e in entries) for s in cfg.splits},
        objects_per_split={
            s: sum(len(e.objects or []) for e in entries if e.split == s) for s in cfg.splits
        },
        issues=len(log.issues),
    )
    logger.info(
        "dataset %s: %s images, %s objects, %d issues in skipped.tsv",
        cfg.name,
        summary.images_per_split,
        summary.objects_per_split,
        summary.issues,
    )
    return summary
