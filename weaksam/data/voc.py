"""PASCAL VOC readers: the devkit layout and loose folders of images + XML files.

Devkit: ``{root}/JPEGImages``, ``{root}/Annotations``, ``{root}/ImageSets/Main/{split}.txt`` and,
optionally, ``{root}/SegmentationObject/{id}.png`` (instance indices in XML object order, 255 =
void). Loose: two folders and no split files; the split is drawn by ``seeded_split``.

VOC boxes are 1-based inclusive pixel indices; with ``one_based`` they become x2-exclusive
0-based edges: ``x1 = xmin - 1, x2 = xmax`` (same width as VOC's ``xmax - xmin + 1``).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

from weaksam.config import VocConfig
from weaksam.data.images import IMAGE_SUFFIXES
from weaksam.data.records import (
    BadInputLog,
    DatasetError,
    SourceImage,
    SourceObject,
    resolve_inside,
)


def _text(node: ET.Element, tag: str, xml_path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{xml_path}: missing <{tag}> in <{node.tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, xml_path: Path) -> float:
    raw = _text(node, tag, xml_path)
    try:
        return float(raw)
    except ValueError as exc:
        raise DatasetError(f"{xml_path}: <{tag}> is not a number: {raw!r}") from exc


def parse_voc_xml(
    xml_path: Path, *, one_based: bool
) -> tuple[str | None, tuple[int, int] | None, list[SourceObject]]:
    """Parse one VOC annotation file.

    Returns (filename or None, (width, height) or None, objects). Boxes are XYXY, x2 exclusive.
    Raises DatasetError naming the file for malformed XML or a malformed object.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{xml_path}: malformed XML ({exc})") from exc
    if root.tag != "annotation":
        raise DatasetError(f"{xml_path}: root element is <{root.tag}>, expected <annotation>")
    filename_node = root.find("filename")
    filename = (
        filename_node.text.strip() if filename_node is not None and filename_node.text else None
    )
    size = None
    size_node = root.find("size")
    if size_node is not None:
        w, h = (
            int(_number(size_node, "width", xml_path)),
            int(_number(size_node, "height", xml_path)),
        )
        size = (w, h) if w > 0 and h > 0 else None
    objects = []
    shift = 1.0 if one_based else 0.0
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", xml_path)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{xml_path}: object {k} ({name}) has no <bndbox>")
        xmin, ymin = _number(bnd, "xmin", xml_path), _number(bnd, "ymin", xml_path)
        xmax, ymax = _number(bnd, "xmax", xml_path), _number(bnd, "ymax", xml_path)
        difficult_node = obj.find("difficult")
        difficult = difficult_node is not None and (difficult_node.text or "0").strip() == "1"
        objects.append(
            SourceObject(name, (xmin - shift, ymin - shift, xmax, ymax), ignore=difficult)
        )
    return filename, size, objects


def _unit_hash(seed: int, image_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the id alone (sha256, first 8 bytes)."""
    digest = hashlib.sha256(f"{seed}\0{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def seeded_split(
    ids: list[str], train: str, test: str, *, seed: int, test_fraction: float
) -> dict[str, str]:
    """Assign each id to ``train`` or ``test``, decided per image: ``test`` when a hash of
    (seed, id), uniform on [0, 1), is below ``test_fraction``. Adding or removing images never
    moves the others. The test share is ``test_fraction`` on average, not exactly; with two or
    more ids and one side empty, the id with the lowest (highest) hash is moved to it, so that
    both splits have an image."""
    u = {image_id: _unit_hash(seed, image_id) for image_id in ids}
    out = {image_id: (test if v < test_fraction else train) for image_id, v in u.items()}
    if len(u) >= 2 and test_fraction > 0:
        if test not in out.values():
            out[min(u, key=u.__getitem__)] = test
        elif train not in out.values():
            out[max(u, key=u.__getitem__)] = train
    return out


def _find_image(root: Path, images_rel: str, image_id: str, filename: str | None) -> Path | None:
    images_dir = root / images_rel
    candidates = []
    if filename:
        candidates.append(
            resolve_inside(root, Path(images_rel) / filename, what=f"image {image_id}")
        )
    candidates += [images_dir / f"{image_id}{ext}" for ext in IMAGE_SUFFIXES]
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None and not found.resolve().is_relative_to(root.resolve()):
        raise DatasetError(f"image {image_id}: {found} links out of the dataset root {root}")
    return found


def _read_one(
    xml_path: Path, image_id: str, split: str, root: Path, cfg: VocConfig, log: BadInputLog
) -> SourceImage | None:
    images_dir = root / cfg.images_dir
    placeholder = SourceImage(image_id, images_dir / image_id, split, None, origin=str(xml_path))
    if not xml_path.is_file():
        log.problem(placeholder, "skipped_image", f"annotation file {xml_path} not found")
        return None
    try:
        filename, size, objects = parse_voc_xml(xml_path, one_based=cfg.one_based)
        image_path = _find_image(root, cfg.images_dir, image_id, filename)
    except DatasetError as exc:
        log.problem(placeholder, "skipped_image", str(exc))
        return None
    if image_path is None:
        log.problem(placeholder, "skipped_image", f"no image file for {image_id} in {images_dir}")
        return None
    mask_path = root / "SegmentationObject" / f"{image_id}.png"
    return SourceImage(
        image_id=image_id,
        path=image_path,
        split=split,
        objects=objects,
        annotated_size=size,
        mask_path=mask_path if cfg.segmentation and mask_path.is_file() else None,
        origin=str(xml_path),
    )


def read_voc(
    root: Path,
    cfg: VocConfig,
    splits: tuple[str, str],
    log: BadInputLog,
    *,
    split_seed: int,
    test_fraction: float,
) -> list[SourceImage]:
    """Read a VOC dataset (devkit or loose layout) into SourceImage records, splits in order."""
    if not root.is_dir():
        raise DatasetError(f"VOC root {root} is not a folder")
    ann_dir = root / cfg.annotations_dir
    if not ann_dir.is_dir():
        raise DatasetError(f"VOC annotations folder {ann_dir} not found")
    assignments: list[tuple[str, str]] = []
    if cfg.layout == "devkit":
        for split in splits:
            split_file = root / "ImageSets" / "Main" / f"{split}.txt"
            if not split_file.is_file():
                raise DatasetError(
                    f"split file {split_file} not found (use dataset.voc.layout: loose for "
                    "folders without ImageSets)"
                )
            ids = [
                line.split()[0]
                for line in split_file.read_text(encoding="utf-8-sig").splitlines()
                if line.strip()
            ]
            assignments += [(image_id, split) for image_id in ids]
    else:
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
        if not ids:
            raise DatasetError(f"no .xml files in {ann_dir}")
        split_of = seeded_split(
            ids, splits[0], splits[1], seed=split_seed, test_fraction=test_fraction
        )
        assignments = [(i, split_of[i]) for s in splits for i in ids if split_of[i] == s]
    records = []
    if cfg.layout == "loose":
        # an image without an XML file has no labels: left out, and said so
        annotated = {image_id for image_id, _ in assignments}
        images_dir = root / cfg.images_dir
        for path in sorted(images_dir.iterdir()) if images_dir.is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES and path.stem not in annotated:
                log.problem(
                    SourceImage(path.stem, path, "", None, origin=str(path)),
                    "skipped_image",
                    f"no annotation file {ann_dir / (path.stem + '.xml')}",
                )
    for image_id, split in assignments:
        rec = _read_one(ann_dir / f"{image_id}.xml", image_id, split, root, cfg, log)
        if rec is not None:
            records.append(rec)
    return records
