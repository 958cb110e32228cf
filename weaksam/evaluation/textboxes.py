"""Convert boxes in a simple text format to COCO files.

One ``{name}.txt`` per image in a ground-truth folder (``class x1 y1 x2 y2 [difficult]``) and in a
detections folder (``class score x1 y1 x2 y2``), as used by the widely used "mAP" example
(Cartucho/mAP). Coordinates are copied as written (often inclusive VOC pixel indices: evaluate
those with ``plus_one``). Image sizes come from an optional images folder, else from the largest
coordinate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from weaksam.data.images import IMAGE_SUFFIXES
from weaksam.evaluation.cocofiles import EvaluationInputError


def _parse(path: Path, *, with_score: bool) -> list[tuple[str, float, list[float], bool]]:
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        difficult = not with_score and parts[-1] == "difficult"
        if difficult:
            parts = parts[:-1]
        n_num = 5 if with_score else 4
        if len(parts) < n_num + 1:
            raise EvaluationInputError(
                f"{path}:{line_no}: expected a class and {n_num} numbers: {line!r}"
            )
        name = " ".join(parts[:-n_num])
        try:
            nums = [float(v) for v in parts[-n_num:]]
        except ValueError as exc:
            raise EvaluationInputError(f"{path}:{line_no}: not a number in {line!r}") from exc
        score = nums[0] if with_score else 1.0
        rows.append((name, score, nums[-4:], difficult))
    return rows


def _image_size(images_dir: Path | None, stem: str, boxes: list[list[float]]) -> tuple[int, int]:
    if images_dir is not None:
        for suffix in IMAGE_SUFFIXES:
            candidate = images_dir / f"{stem}{suffix}"
            if candidate.is_file():
                with Image.open(candidate) as img:
                    return img.size
    w = max((b[2] for b in boxes), default=1.0) + 1
    h = max((b[3] for b in boxes), default=1.0) + 1
    return int(w), int(h)


def text_boxes_to_coco(
    gt_dir: Path, det_dir: Path, images_dir: Path | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Returns (COCO instances dict, COCO results list). Classes: the sorted names found in the
    ground truth, then detection-only names (which have no ground truth, hence no AP)."""
    gt_files = sorted(gt_dir.glob("*.txt"))
    if not gt_files:
        raise EvaluationInputError(f"no .txt files in {gt_dir}")
    gt_rows = {p.stem: _parse(p, with_score=False) for p in gt_files}
    det_rows = {p.stem: _parse(p, with_score=True) for p in sorted(det_dir.glob("*.txt"))}
    unknown = sorted(set(det_rows) - set(gt_rows))
    if unknown:
        raise EvaluationInputError(
            f"{det_dir}: detections for images without ground truth: {unknown[:5]}"
        )
    names = sorted({r[0] for rows in gt_rows.values() for r in rows})
    names += sorted({r[0] for rows in det_rows.values() for r in rows} - set(names))
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for image_id, (stem, rows) in enumerate(gt_rows.items(), start=1):
        w, h = _image_size(images_dir, stem, [r[2] for r in rows])
        images.append({"id": image_id, "file_name": stem, "width": w, "height": h})
        for name, _, (x1, y1, x2, y2), difficult in rows:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id[name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "ignore": int(difficult),
                }
            )
        for name, score, (x1, y1, x2, y2), _ in det_rows.get(stem, []):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat_id[name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    categories = [{"id": i, "name": n, "supercategory": "object"} for n, i in cat_id.items()]
    return {"images": images, "annotations": annotations, "categories": categories}, results
