"""``weaksam predict``: a retrained model (Faster R-CNN, Mask R-CNN, the DINO-style DETR or
Mask2Former) on new images.

Inputs are image files, folders (their images, sorted, not recursive) and text files listing one
image path per line (relative paths start at the list's folder). Images are read as the workflow
reads them (``load_rgb``: EXIF orientation applied, 16-bit, CMYK, palette and alpha converted), so
boxes and masks are in the displayed orientation. An image that cannot be read is skipped and
listed in the output's ``skipped`` and on stderr, never fatal.

The output stands alone: ``images`` (id, path, width, height), ``categories`` (the model's class
names, ids from 1), ``annotations`` (COCO results: ``image_id``, ``category_id``, ``bbox`` as
x, y, w, h, ``score``, and an RLE ``segmentation`` for Mask R-CNN and Mask2Former) and
``skipped``. The model's
own test-time settings (test size, TTA) are the defaults; ``test_size`` / ``tta`` override them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weaksam.data.images import IMAGE_SUFFIXES, BadImageError, load_rgb
from weaksam.training import ModelKindError as ModelKindError  # the CLI's error

logger = logging.getLogger(__name__)


def require_detector(path: Path) -> None:
    """Refuse, with what the file is and what was expected, anything but a retrained model:
    Faster / Mask R-CNN, the DINO-style DETR or Mask2Former (the checks of the loaders, without
    building the model)."""
    from weaksam.detr.stage import KINDS, checkpoint_kind
    from weaksam.detr.train import load_checkpoint as load_transformer
    from weaksam.retrain.train import load_checkpoint

    try:
        load_checkpoint(path)
    except ModelKindError:
        kind = checkpoint_kind(path)
        if kind not in KINDS:
            raise
        load_transformer(path, "dino" if kind == "dino" else "mask2former")


@dataclass(frozen=True)
class _Loaded:
    """A retrained model behind one interface: its classes, test settings (a config section),
    one-image detection and, for the R-CNNs, batched detection."""

    classes: list[str]
    cfg: Any
    detect: Callable[[torch.Tensor, Any], dict[str, torch.Tensor]]
    detect_batch: Callable[[list[torch.Tensor], Any], list[dict[str, torch.Tensor]]] | None


def _load(model_path: Path, dev: torch.device) -> _Loaded:
    from weaksam.detr.stage import KINDS, checkpoint_kind

    kind = checkpoint_kind(model_path)
    if kind in KINDS:
        from weaksam.detr.stage import detect_image, load_model

        k, net, cfg, classes = load_model(
            model_path, dev, "dino" if kind == "dino" else "mask2former"
        )
        return _Loaded(classes, cfg, lambda image, c: detect_image(k, net, image, c), None)
    from weaksam.retrain.infer import detect, detect_batch
    from weaksam.retrain.stage import load_detector

    model, rcfg, classes, _masks = load_detector(model_path, dev)
    return _Loaded(
        classes,
        rcfg,
        lambda image, c: detect(model, image, c),
        lambda images, c: detect_batch(model, images, c),
    )


def collect_images(inputs: list[Path]) -> list[Path]:
    """Image paths from files, folders and text lists, in the order given, without repeats."""
    out: list[Path] = []
    for item in inputs:
        if item.is_dir():
            out += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.suffix.lower() == ".txt":
            lines = item.read_text(encoding="utf-8-sig").splitlines()
            out += [item.parent / line.strip() for line in lines if line.strip()]
        else:
            out.append(item)
    return list(dict.fromkeys(out))


@dataclass
class Predictions:
    images: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "info": {"description": "weaksam predict"},
            "images": self.images,
            "categories": self.categories,
            "annotations": self.annotations,
            "skipped": self.skipped,
        }


def predict(
    model_path: Path,
    inputs: list[Path],
    *,
    device: str = "auto",
    score_threshold: float | None = None,
    test_size: int | None = None,
    tta: bool | None = None,
    draw_dir: Path | None = None,
    batch_size: int = 1,
    show_progress: bool = True,
    inference: Mapping[str, Any] | None = None,
) -> Predictions:
    """Detections of the model at ``model_path`` on the images of ``inputs``. The test pass
    is the one recorded in the model file, unless ``inference`` gives other values of the
    ``retrain`` section's test keys (the workflow's rule gives the config's)."""
    from weaksam.logs import progress
    from weaksam.retrain.infer import coco_results

    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    else:
        dev = torch.device(device)
    loaded = _load(model_path, dev)
    rcfg, classes = loaded.cfg, loaded.classes
    if inference:
        rcfg = replace(rcfg, **inference)
    if test_size is not None:
        rcfg = replace(rcfg, test_size=test_size)
    if tta is False and hasattr(rcfg, "tta_sizes"):
        rcfg = replace(rcfg, tta_sizes=())
    if score_threshold is not None:
        rcfg = replace(rcfg, score_thresh=score_threshold)
    paths = collect_images(inputs)
    result = Predictions(categories=[{"id": i + 1, "name": c} for i, c in enumerate(classes)])
    # TTA, and the transformer models, run image by image
    batched = loaded.detect_batch is not None and not getattr(rcfg, "tta_sizes", ())
    batch = max(1, batch_size) if batched else 1
    pending: list[tuple[int, Path, np.ndarray]] = []

    def flush() -> None:
        tensors = [
            torch.from_numpy(a).permute(2, 0, 1).float().div(255.0).to(dev) for *_, a in pending
        ]
        if len(tensors) == 1 or loaded.detect_batch is None:
            outs = [loaded.detect(t, rcfg) for t in tensors]
        else:
            outs = loaded.detect_batch(tensors, rcfg)
        for (image_id, path, rgb), dets in zip(pending, outs, strict=True):
            entries = coco_results(dets, image_id)
            result.annotations.extend(entries)
            if draw_dir is not None:
                draw(rgb, entries, classes, draw_dir / f"{image_id:06d}_{path.stem}.png")
        pending.clear()

    items = progress(paths, desc="predict", total=len(paths)) if show_progress else paths
    for path in items:
        try:
            rgb = load_rgb(path)
        except (BadImageError, FileNotFoundError) as exc:
            result.skipped.append({"path": str(path), "reason": str(exc)})
            logger.warning("skipped %s: %s", path, exc)
            continue
        image_id = len(result.images) + 1
        h, w = rgb.shape[:2]
        result.images.append({"id": image_id, "file_name": str(path), "width": w, "height": h})
        pending.append((image_id, path, rgb))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return result


def draw(rgb: np.ndarray, entries: list[dict[str, Any]], classes: list[str], out: Path) -> None:
    """One image with its boxes, class names, scores and (Mask R-CNN) masks, as PNG."""
    from PIL import Image, ImageDraw

    from weaksam.data.masks import segmentation_to_mask

    h, w = rgb.shape[:2]
    canvas = rgb.astype(np.float32)
    colours = np.array(
        [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180]], np.float32
    )
    for e in entries:
        if "segmentation" in e:
            m = segmentation_to_mask(e["segmentation"], h, w).astype(bool)
            colour = colours[(e["category_id"] - 1) % len(colours)]
            canvas[m] = 0.55 * canvas[m] + 0.45 * colour
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    for e in entries:
        x, y, bw, bh = e["bbox"]
        colour = tuple(int(v) for v in colours[(e["category_id"] - 1) % len(colours)])
        pen.rectangle([x, y, x + bw, y + bh], outline=colour, width=2)
        pen.text((x + 2, y + 1), f"{classes[e['category_id'] - 1]} {e['score']:.2f}", fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
