"""The transformer retrainers as the workflow runs them: train on the pseudo ground truth (DINO,
PGT boxes) or the SAM pseudo masks (Mask2Former), detect on a split."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weaksam.cam.imaging import to_tensor
from weaksam.compute import select_device
from weaksam.config import (
    AssetsConfig,
    DinoConfig,
    Mask2FormerConfig,
    WeaksamConfig,
    section_from_dict,
)
from weaksam.data.images import load_rgb
from weaksam.data.manifest import read_manifest
from weaksam.detr.train import Kind, build_model, check_classes, load_checkpoint, train_transformer
from weaksam.io import write_json
from weaksam.logs import progress
from weaksam.retrain.infer import coco_results
from weaksam.retrain.train import read_targets
from weaksam.training import ModelKindError

logger = logging.getLogger(__name__)

KINDS: tuple[Kind, ...] = ("dino", "mask2former")


def section(cfg: WeaksamConfig, kind: Kind) -> DinoConfig | Mask2FormerConfig:
    return cfg.retrain.dino if kind == "dino" else cfg.wsis.mask2former


def train_stage(
    cfg: WeaksamConfig,
    kind: Kind,
    manifest_path: str,
    instances_path: str,
    out: str,
    *,
    train_log: str,
    threads: int,
    stop_after: int | None = None,
) -> None:
    """Train ``kind`` on a COCO instances file of the training split: the PGT (dino) or the
    pseudo masks (mask2former). Images without pseudo objects stay in as negatives."""
    torch.set_num_threads(max(1, threads))
    manifest = read_manifest(manifest_path)
    with Path(instances_path).open() as f:
        items = read_targets(json.load(f), masks=kind == "mask2former")
    if not items:
        raise ValueError(f"{instances_path}: no images to train on")
    logger.info(
        "%d images, %d pseudo objects, %d images without any (kept as negatives)",
        len(items),
        sum(len(i.boxes) for i in items),
        sum(len(i.boxes) == 0 for i in items),
    )
    work = Path(out).with_name("checkpoint.pt")
    train_transformer(
        kind,
        items,
        list(manifest.classes),
        section(cfg, kind),
        cfg.assets,
        out=Path(out),
        work=work,
        log_path=Path(train_log),
        seed=cfg.compute.seed,
        compute=cfg.compute,
        stop_after=stop_after,
    )
    if Path(out).exists():
        work.unlink(missing_ok=True)


def checkpoint_kind(path: str | Path) -> str | None:
    """The ``kind`` a model file records (detector, dino, mask2former, …); None for a file that
    does not load with ``weights_only`` or records none (the loaders then say what it is)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, corrupt or foreign: reported by the loader that refuses it
        return None
    return str(state["kind"]) if isinstance(state, dict) and "kind" in state else None


def load_model(
    path: str | Path, device: torch.device, kind: Kind | None = None
) -> tuple[Kind, nn.Module, DinoConfig | Mask2FormerConfig, list[str]]:
    """A trained DINO or Mask2Former in eval mode on ``device``, with its config section and
    classes. ``kind`` given: a file of another kind is refused."""
    found = kind or checkpoint_kind(path)
    if found is None:
        raise ModelKindError(f"{path}: not a weaksam model file")
    if found not in KINDS:
        raise ModelKindError(f"{path}: a {found} model, not one of {', '.join(KINDS)}")
    k: Kind = "dino" if found == "dino" else "mask2former"
    state = load_checkpoint(path, k)
    cfg: DinoConfig | Mask2FormerConfig = (
        section_from_dict(DinoConfig, state["config"])
        if k == "dino"
        else section_from_dict(Mask2FormerConfig, state["config"])
    )
    classes = list(state["classes"])
    model = build_model(k, cfg, len(classes), AssetsConfig(), pretrained=False)
    model.load_state_dict(state["model"])
    return k, model.to(device).eval(), cfg, classes


def detect_image(
    kind: Kind, model: nn.Module, image: torch.Tensor, cfg: DinoConfig | Mask2FormerConfig
) -> dict[str, torch.Tensor]:
    from weaksam.detr.infer import detect_dino, detect_mask2former

    if kind == "dino":
        assert isinstance(cfg, DinoConfig)
        return detect_dino(model, image, cfg)
    assert isinstance(cfg, Mask2FormerConfig)
    return detect_mask2former(model, image, cfg)


def detect_stage(
    cfg: WeaksamConfig,
    kind: Kind,
    manifest_path: str,
    model_path: str,
    split: str,
    out: str,
    *,
    threads: int,
) -> None:
    """COCO results of a split (``image_id`` = manifest coco_id); the test-time settings come
    from the current config."""
    torch.set_num_threads(max(1, threads))
    device = select_device(cfg.compute)
    _, model, _, classes = load_model(model_path, device, kind)
    manifest = read_manifest(manifest_path)
    check_classes({"classes": classes}, list(manifest.classes), model_path)
    test_cfg = section(cfg, kind)
    frame = manifest.split(split)
    results: list[dict[str, Any]] = []
    for row in progress(frame.itertuples(index=False), total=len(frame), desc=f"{kind} {split}"):
        image = (to_tensor(load_rgb(Path(str(row.path)))) / 255.0).to(device)
        results.extend(coco_results(detect_image(kind, model, image, test_cfg), int(row.coco_id)))
    write_json(out, results)
    logger.info("%d detections on %d %s images", len(results), len(frame), split)
