"""Training the transformer retrainers (DINO-style DETR, Mask2Former) on pseudo ground truth.

The conventions of the R-CNN trainers (``weaksam.retrain.train``), through the same loop
(``weaksam.training.train_loop``): targets from a COCO instances file (the PGT boxes, or the SAM
pseudo masks), images without any pseudo object kept as negatives; ``batch_size`` images per
step in forwards of ``images_per_forward`` with gradients accumulated, shared out over
``torchrun`` processes; per-image draws seeded by (seed, step, position) so a resumed run repeats
them; a checkpoint every ``checkpoint_every`` steps, resumed from; bf16 autocast on CUDA with the
losses (matching included) in fp32.

The optimiser is AdamW with the backbone at ``backbone_lr_mult`` x the rate, the norm of all
gradients clipped to ``grad_clip``, step decay by ``gamma`` at ``lr_steps``. Mask2Former's norm
and embedding parameters get no weight decay (detectron2's ``WEIGHT_DECAY_NORM`` /
``WEIGHT_DECAY_EMBED`` 0).

Augmentation:

- DINO: the shorter side drawn from ``train_sizes`` (longer side at most ``max_size``) and a
  horizontal flip. DETR's random crop branch is not applied (a deviation; see the README).
- Mask2Former: large-scale jitter, as detectron2's ``ResizeScale`` + ``FixedSizeCrop``: the image
  is scaled to fit ``crop_size`` x a factor drawn from ``scale_range``, a random
  ``crop_size`` square is cut (padded when smaller), and flipped; a mask the crop empties is
  dropped with its object.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from weaksam.cam.imaging import to_tensor
from weaksam.compute import autocast, select_device
from weaksam.config import AssetsConfig, ComputeConfig, DinoConfig, Mask2FormerConfig
from weaksam.data.images import load_rgb
from weaksam.data.masks import segmentation_to_mask
from weaksam.dependencies import declared_dict
from weaksam.retrain.train import TrainImage
from weaksam.training import (
    Distributed,
    StepResult,
    Trainer,
    batch_indices,
    image_seed,
    load_state,
    save_state,
    step_lr_factor,
    train_loop,
)

logger = logging.getLogger(__name__)

Kind = Literal["dino", "mask2former"]
CHECKPOINT_VERSION = 1
SIZE_DIVISOR = 32  # the feature pyramids fuse strides 8..32 (4..32): sides are padded to this


class ClassCountError(ValueError):
    """A checkpoint's classes differ from the run's."""


@dataclass(frozen=True)
class Example:
    """One augmented training image: (3, H, W) RGB in 0..1, boxes XYXY in its pixels, 0-based
    labels and, for Mask2Former, (N, H, W) masks."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None


def build_model(
    kind: Kind,
    cfg: DinoConfig | Mask2FormerConfig,
    num_classes: int,
    assets: AssetsConfig,
    *,
    pretrained: bool,
) -> nn.Module:
    weights = assets.resnet50 if cfg.backbone == "resnet50" else None
    if kind == "dino":
        from weaksam.detr.dino import build_dino

        assert isinstance(cfg, DinoConfig)
        return build_dino(cfg, num_classes, weights=weights, pretrained=pretrained)
    from weaksam.detr.mask2former import build_mask2former

    assert isinstance(cfg, Mask2FormerConfig)
    model = build_mask2former(cfg, num_classes, weights=weights, pretrained=pretrained)
    model.criterion = Fp32Loss(model.criterion)  # type: ignore[assignment]
    return model


class Fp32Loss(nn.Module):
    """Runs a criterion outside autocast on fp32 inputs (the Hungarian matching hands its costs
    to scipy, and bf16 logits would round the losses)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        def up(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.float()
            if isinstance(v, list):
                return [up(x) for x in v]
            if isinstance(v, dict):
                return {k: up(x) for k, x in v.items()}
            return v

        device_type = next(self.inner.buffers(), torch.empty(0)).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self.inner(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})


def _resize(image: torch.Tensor, scale: float) -> torch.Tensor:
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=scale < 1
    )[0]


def _masks_of(item: TrainImage) -> torch.Tensor:
    assert item.segmentations is not None
    m = np.zeros((len(item.segmentations), item.height, item.width), dtype=np.uint8)
    for k, seg in enumerate(item.segmentations):
        m[k] = segmentation_to_mask(seg, item.height, item.width)
    return torch.from_numpy(m)


def _flip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    return torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1)


def dino_example(item: TrainImage, cfg: DinoConfig, gen: torch.Generator) -> Example:
    """Shorter side from ``train_sizes`` (longer side capped at ``max_size``), maybe flipped."""
    image = to_tensor(load_rgb(Path(item.path))) / 255.0
    h, w = image.shape[-2:]
    size = cfg.train_sizes[int(torch.randint(len(cfg.train_sizes), (), generator=gen))]
    scale = min(size / min(h, w), cfg.max_size / max(h, w))
    image = _resize(image, scale)
    boxes = torch.from_numpy(item.boxes.copy()) * scale
    if cfg.flip and float(torch.rand((), generator=gen)) < 0.5:
        image = image.flip(-1)
        boxes = _flip_boxes(boxes, float(image.shape[-1]))
    return Example(image, boxes, torch.from_numpy(item.labels) - 1)


def boxes_of_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) non-empty masks -> (N, 4) XYXY boxes around them (pixel edges)."""
    if len(masks) == 0:
        return torch.zeros((0, 4))
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[-2:]
    r, c = torch.arange(h), torch.arange(w)
    return torch.stack(
        (
            torch.where(cols, c, w).min(1).values,
            torch.where(rows, r, h).min(1).values,
            torch.where(cols, c, -1).max(1).values + 1,
            torch.where(rows, r, -1).max(1).values + 1,
        ),
        dim=1,
    ).float()


def lsj_example(item: TrainImage, cfg: Mask2FormerConfig, gen: torch.Generator) -> Example:
    """Large-scale jitter: scale to fit ``crop_size`` x U(scale_range), cut a random
    ``crop_size`` square (padded with zeros when the image is smaller), maybe flip."""
    image = to_tensor(load_rgb(Path(item.path))) / 255.0
    masks = _masks_of(item)
    h, w = image.shape[-2:]
    low, high = cfg.scale_range
    factor = low + (high - low) * float(torch.rand((), generator=gen))
    scale = cfg.crop_size * factor / max(h, w)
    image = _resize(image, scale)
    nh, nw = image.shape[-2:]
    if len(masks):
        masks = F.interpolate(masks[None].float(), size=(nh, nw), mode="nearest")[0] > 0.5
    else:
        masks = torch.zeros((0, nh, nw), dtype=torch.bool)
    top = int(torch.randint(max(nh - cfg.crop_size, 0) + 1, (), generator=gen))
    left = int(torch.randint(max(nw - cfg.crop_size, 0) + 1, (), generator=gen))
    image = image[:, top : top + cfg.crop_size, left : left + cfg.crop_size]
    masks = masks[:, top : top + cfg.crop_size, left : left + cfg.crop_size]
    if cfg.flip and float(torch.rand((), generator=gen)) < 0.5:
        image, masks = image.flip(-1), masks.flip(-1)
    labels = torch.from_numpy(item.labels) - 1
    kept = masks.flatten(1).any(1)
    masks, labels = masks[kept], labels[kept]
    return Example(image, boxes_of_masks(masks), labels, masks)


def pad_batch(
    images: list[torch.Tensor], fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Images padded (bottom, right) to one canvas whose sides are multiples of
    ``SIZE_DIVISOR``: (B, 3, H, W) and (H, W). ``fill``: the padding colour, (3,) in 0..1 (the
    backbone's mean colour, ``pad_fill``, so that padding normalises to 0 as in mmdetection and
    detectron2; RT-DETR does not mask it out); zeros when not given."""
    h = max(i.shape[-2] for i in images)
    w = max(i.shape[-1] for i in images)
    h, w = (math.ceil(s / SIZE_DIVISOR) * SIZE_DIVISOR for s in (h, w))
    batch = images[0].new_zeros((len(images), 3, h, w))
    if fill is not None:
        batch[:] = fill.to(batch).view(1, 3, 1, 1)
    for k, image in enumerate(images):
        batch[k, :, : image.shape[-2], : image.shape[-1]] = image
    return batch, (h, w)


def dino_labels(
    examples: list[Example], canvas: tuple[int, int], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Targets as transformers' DETRs take them: 0-based ``class_labels`` and ``boxes`` as
    (cx, cy, w, h) normalised by the padded canvas (the frame the model predicts in)."""
    h, w = canvas
    out = []
    for ex in examples:
        b = ex.boxes
        cxcywh = torch.stack(
            (
                (b[:, 0] + b[:, 2]) / 2 / w,
                (b[:, 1] + b[:, 3]) / 2 / h,
                (b[:, 2] - b[:, 0]) / w,
                (b[:, 3] - b[:, 1]) / h,
            ),
            dim=1,
        ).clamp(0, 1)
        out.append({"class_labels": ex.labels.to(device), "boxes": cxcywh.to(device)})
    return out


def mask_labels(
    examples: list[Example], canvas: tuple[int, int], device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Mask2Former's targets: (N, H, W) float masks on the padded canvas and 0-based labels."""
    masks, labels = [], []
    for ex in examples:
        assert ex.masks is not None
        m = torch.zeros((len(ex.masks), *canvas))
        m[:, : ex.masks.shape[-2], : ex.masks.shape[-1]] = ex.masks.float()
        masks.append(m.to(device))
        labels.append(ex.labels.to(device))
    return masks, labels


def pad_fill(model: nn.Module) -> torch.Tensor:
    """The mean colour (3,) in 0..1 of the model's backbone: what padding is filled with."""
    from weaksam.detr.backbone import MultiScaleBackbone

    backbone = next(m for m in model.modules() if isinstance(m, MultiScaleBackbone))
    return backbone.mean.flatten().cpu()


def backbone_parameters(model: nn.Module) -> set[int]:
    from weaksam.detr.backbone import MultiScaleBackbone

    return {
        id(p) for m in model.modules() if isinstance(m, MultiScaleBackbone) for p in m.parameters()
    }


def param_groups(
    model: nn.Module, cfg: DinoConfig | Mask2FormerConfig, *, no_decay_norms: bool
) -> list[dict[str, Any]]:
    """AdamW groups: the backbone at ``backbone_lr_mult`` x the rate; norm and embedding
    parameters without weight decay when ``no_decay_norms``."""
    body = backbone_parameters(model)
    plain: set[int] = set()
    if no_decay_norms:
        norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.Embedding)
        plain = {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters()}
        plain |= {id(p) for n, p in model.named_parameters() if n.endswith("weight_embedding")}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in body, id(p) in plain), []).append(p)
    out = []
    for (is_body, is_plain), params in sorted(groups.items()):
        lr = cfg.lr * (cfg.backbone_lr_mult if is_body else 1.0)
        wd = 0.0 if is_plain else cfg.weight_decay
        out.append({"params": params, "lr": lr, "base_lr": lr, "weight_decay": wd})
    return out


def save_checkpoint(
    path: Path,
    kind: Kind,
    model: nn.Module,
    step: int,
    cfg: DinoConfig | Mask2FormerConfig,
    classes: list[str],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    state: dict[str, Any] = {
        "format_version": CHECKPOINT_VERSION,
        "kind": kind,
        "model": model.state_dict(),
        "step": step,
        "config": declared_dict(cfg),
        "classes": list(classes),
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    save_state(path, state)


def load_checkpoint(
    path: str | Path, kind: Kind, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    return load_state(
        path, kind=kind, version=CHECKPOINT_VERSION, what=kind, map_location=map_location
    )


def check_classes(state: Mapping[str, Any], classes: list[str], path: str | Path) -> None:
    if list(state["classes"]) != list(classes):
        raise ClassCountError(
            f"{path}: trained for {len(state['classes'])} classes {list(state['classes'])}, "
            f"this run has {len(classes)}: {list(classes)}"
        )


def train_transformer(
    kind: Kind,
    items: list[TrainImage],
    classes: list[str],
    cfg: DinoConfig | Mask2FormerConfig,
    assets: AssetsConfig,
    *,
    out: Path,
    work: Path,
    log_path: Path,
    seed: int,
    compute: ComputeConfig | None = None,
    pretrained: bool = True,
    stop_after: int | None = None,
) -> nn.Module:
    """Train ``kind`` on ``items``; checkpoint to ``work`` (resumed from) and write ``out``.
    ``stop_after`` stops after that many steps without writing ``out`` (tests)."""
    compute = compute or ComputeConfig(device="cpu")
    device = select_device(compute)
    ddp = Distributed(device)
    device = ddp.local_device(device)
    torch.manual_seed(seed)
    model = build_model(kind, cfg, len(classes), assets, pretrained=pretrained).to(device)
    opt = torch.optim.AdamW(
        param_groups(model, cfg, no_decay_norms=kind == "mask2former"), lr=cfg.lr
    )
    params = [p for g in opt.param_groups for p in g["params"]]

    fill = pad_fill(model)

    def forward(examples: list[Example]) -> tuple[torch.Tensor, dict[str, float]]:
        pixels, canvas = pad_batch([e.image for e in examples], fill)
        pixels = pixels.to(device)
        with autocast(compute, device):
            if kind == "dino":
                out = model(pixel_values=pixels, labels=dino_labels(examples, canvas, device))
                parts = out.loss_dict
            else:
                masks, labels = mask_labels(examples, canvas, device)
                out = model(pixel_values=pixels, mask_labels=masks, class_labels=labels)
                parts = {}
        loss = out.loss.float()
        summary = {k: float(v.detach()) for k, v in parts.items() if "_" not in k[5:]}
        return loss, summary

    def step_fn(step: int) -> StepResult:
        """One optimiser step over the batch. Each forward's loss is its sum over objects
        divided by its own object count (transformers' criteria); weighting it by that count
        over the step's total count, summed over processes, gives every object of the step the
        same weight, as mmdetection's and detectron2's normalisation by the batch's count."""
        batch = batch_indices(step, len(items), cfg.batch_size, seed)
        mine = [(pos, i) for pos, i in enumerate(batch) if pos % ddp.world == ddp.rank]
        opt.zero_grad(set_to_none=True)
        model.train()
        examples = []
        for pos, i in mine:
            gen = torch.Generator().manual_seed(image_seed(seed, step, pos))
            if kind == "dino":
                assert isinstance(cfg, DinoConfig)
                examples.append(dino_example(items[i], cfg, gen))
            else:
                assert isinstance(cfg, Mask2FormerConfig)
                examples.append(lsj_example(items[i], cfg, gen))
        objects = sum(len(e.labels) for e in examples)
        batch_objects = ddp.sum_value(float(objects))  # every process's
        everyone = max(batch_objects, 1.0)
        total = 0.0
        parts: dict[str, float] = {}
        for chunk in range(0, len(examples), cfg.images_per_forward):
            group = examples[chunk : chunk + cfg.images_per_forward]
            loss, summary = forward(group)
            weight = max(sum(len(e.labels) for e in group), 1) / everyone
            (loss * weight).backward()
            total += float(loss.detach()) * weight
            for k, v in summary.items():
                parts[k] = parts.get(k, 0.0) + v * weight
        ddp.sum_gradients(params)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        # the whole batch's objects, loss and parts
        columns = (round(batch_objects),)
        return StepResult(ddp.sum_value(total), columns=columns, parts=ddp.sum_parts(parts))

    def save(path: Path, step: int, opts: Mapping[str, torch.optim.Optimizer] | None) -> None:
        optimizer = None if opts is None else opts["optimizer"]
        save_checkpoint(path, kind, model, step, cfg, classes, optimizer)

    def load(path: Path, dev: torch.device) -> dict[str, Any]:
        state = load_checkpoint(path, kind, map_location=dev)
        check_classes(state, classes, path)
        return state

    train_loop(
        Trainer(
            name=kind,
            model=model,
            optimizers={"optimizer": opt},
            lr_factors=lambda step: {
                "optimizer": step_lr_factor(
                    step,
                    warmup_iterations=cfg.warmup_iterations,
                    warmup_factor=cfg.warmup_factor,
                    lr_steps=cfg.lr_steps,
                    gamma=cfg.gamma,
                )
            },
            step=step_fn,
            save=save,
            load=load,
            logged_lr=lambda: max(float(g["lr"]) for g in opt.param_groups),  # not the backbone's
            columns=("objects",),
            parts=kind == "dino",
        ),
        iterations=cfg.iterations,
        checkpoint_every=cfg.checkpoint_every,
        work=work,
        out=out,
        log_path=log_path,
        ddp=ddp,
        device=device,
        stop_after=stop_after,
    )
    return model
