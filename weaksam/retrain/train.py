"""Training a torchvision Faster / Mask R-CNN on pseudo ground truth only (METHOD.md 10, 11).

- Targets come from a COCO instances file (the PGT, or the SAM masks for Mask R-CNN); the
  ground truth is never read. Images whose pseudo ground truth is empty stay in as negatives.
- SGD with momentum and weight decay; linear warm-up from ``warmup_factor``; x ``gamma`` at each
  of ``lr_steps``. ``batch_size`` images per step, ``images_per_forward`` per forward, gradients
  accumulated; several processes under ``torchrun`` take their share of every step and sum
  gradients (weaksam.training).
- Multi-scale training (torchvision's transform draws the shorter side from ``train_sizes``) and
  horizontal flips, seeded per (seed, step, position) so resumed runs repeat the draws.
- bf16 autocast on CUDA for the backbone only: the RPN and RoI heads get fp32 features, so
  anchors, proposals and regression targets are not rounded to bf16's 8 bits (4-8 px steps at
  500-2000 px; RoI drop reads the regression loss). RoI drop after ``roi_drop.start_iter`` (DropRoIHeads); the number of
  dropped RoIs is logged per step.
- A checkpoint every ``checkpoint_every`` steps, resumed from when present.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from weaksam.cam.imaging import to_tensor
from weaksam.compute import autocast, select_device
from weaksam.config import AssetsConfig, ComputeConfig, RetrainConfig
from weaksam.data.images import load_rgb
from weaksam.data.masks import segmentation_to_mask
from weaksam.dependencies import declared_dict
from weaksam.evaluation.cocofiles import xywh_to_xyxy
from weaksam.models.backbones import freeze_parameters
from weaksam.retrain.detector import DropRoIHeads, RoiDropParams, build_detector
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

CHECKPOINT_VERSION = 1
CHECKPOINT_KIND = "detector"


@dataclass(frozen=True)
class TrainImage:
    coco_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 XYXY
    labels: np.ndarray  # (N,) int64, 1-based category ids (torchvision: 0 is background)
    segmentations: list[Any] | None  # COCO segmentations (RLE / polygons); None: boxes only


def read_targets(
    instances: dict[str, Any], *, masks: bool, partial_masks: bool = False
) -> list[TrainImage]:
    """One entry per image of a COCO instances file (category ids 1..K). Crowd annotations
    (ground truth used as an upper bound) are not objects to learn and are left out.

    With ``masks`` every annotation needs a segmentation (pseudo masks always have one). With
    ``partial_masks`` too (ground truth as the upper bound of Mask R-CNN), an image read with its
    instance map (``segmented``) loses its objects without pixels there, and an image without
    masks (VOC07, most of VOC12) is left out; both are logged."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in instances["annotations"]:
        if not a.get("iscrowd", 0):
            by_image.setdefault(int(a["image_id"]), []).append(a)
    out = []
    unmasked: list[int] = []
    pixel_less = 0
    for img in instances["images"]:
        anns = by_image.get(int(img["id"]), [])
        if masks and any("segmentation" not in a for a in anns):
            if not partial_masks:
                raise ValueError(f"image {img['id']}: an annotation has no segmentation")
            if not img.get("segmented"):
                unmasked.append(int(img["id"]))
                continue
            pixel_less += sum("segmentation" not in a for a in anns)
            anns = [a for a in anns if "segmentation" in a]
        boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns])).astype(np.float32)
        out.append(
            TrainImage(
                coco_id=int(img["id"]),
                path=str(img["file_name"]),
                width=int(img["width"]),
                height=int(img["height"]),
                boxes=boxes,
                labels=np.array([int(a["category_id"]) for a in anns], dtype=np.int64),
                segmentations=[a["segmentation"] for a in anns] if masks else None,
            )
        )
    if unmasked or pixel_less:
        logger.warning(
            "mask targets: %d of %d images have objects without masks and are left out (first: "
            "%d); %d objects without pixels in their instance maps left out",
            len(unmasked),
            len(instances["images"]),
            unmasked[0] if unmasked else -1,
            pixel_less,
        )
    if masks and not out:
        raise ValueError("no image has a mask for every object: nothing to train masks on")
    return out


def sample(item: TrainImage, *, flip: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Image (3, H, W) in 0..1 and its torchvision target, mirrored when ``flip``."""
    image = to_tensor(load_rgb(Path(item.path))) / 255.0
    boxes = torch.from_numpy(item.boxes.copy())
    target: dict[str, torch.Tensor] = {"boxes": boxes, "labels": torch.from_numpy(item.labels)}
    if item.segmentations is not None:
        m = np.zeros((len(item.segmentations), item.height, item.width), dtype=np.uint8)
        for k, seg in enumerate(item.segmentations):
            m[k] = segmentation_to_mask(seg, item.height, item.width)
        target["masks"] = torch.from_numpy(m)
    if flip:
        image = image.flip(-1)
        w = float(image.shape[-1])
        target["boxes"] = torch.stack(
            (w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]), dim=1
        )
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
    return image, target


def autocast_backbone_only(
    model: FasterRCNN, context: Callable[[], AbstractContextManager[Any]]
) -> None:
    """Run ``model.backbone`` inside ``context()`` (an autocast) and hand its features on in fp32:
    torchvision builds anchors in the features' dtype, and the proposals and box targets follow
    them. Set on the instance, so the state dict is unchanged."""
    inner = model.backbone.forward

    def forward(x: torch.Tensor) -> Any:
        with context():
            out = inner(x)
        if isinstance(out, torch.Tensor):
            return out.float()
        return type(out)((k, v.float()) for k, v in out.items())

    model.backbone.forward = forward


def lr_factor(step: int, cfg: RetrainConfig) -> float:
    return step_lr_factor(
        step,
        warmup_iterations=cfg.warmup_iterations,
        warmup_factor=cfg.warmup_factor,
        lr_steps=cfg.lr_steps,
        gamma=cfg.gamma,
    )


def build_from_config(
    cfg: RetrainConfig, assets: AssetsConfig, num_classes: int, *, masks: bool, pretrained: bool
) -> FasterRCNN:
    weights = assets.resnet50 if cfg.backbone == "r50_fpn" else None
    drop = RoiDropParams(
        enabled=cfg.roi_drop.enabled,
        start_iter=cfg.roi_drop.start_iter,
        thresh_cls=cfg.roi_drop.thresh_cls,
        thresh_reg=cfg.roi_drop.thresh_reg,
        beta=cfg.box_loss_beta,
    )
    model = build_detector(
        cfg.backbone,
        num_classes,
        masks=masks,
        drop=drop,
        weights=weights,
        pretrained=pretrained,
        min_size=tuple(cfg.train_sizes),
        max_size=cfg.max_size,
        sizes=cfg.sizes,
    )
    if cfg.backbone_lr_mult == 0:
        freeze_parameters(model.backbone.body)
    return model


def param_groups(model: FasterRCNN, cfg: RetrainConfig) -> list[dict[str, Any]]:
    """The pretrained backbone body at ``backbone_lr_mult`` x the rate, everything else (FPN or
    reduction, RPN, heads) at the rate."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    body = [p for n, p in named if n.startswith("backbone.body.")]
    rest = [p for n, p in named if not n.startswith("backbone.body.")]
    lr_body = cfg.lr * cfg.backbone_lr_mult
    return [
        {"params": rest, "lr": cfg.lr, "base_lr": cfg.lr},
        {"params": body, "lr": lr_body, "base_lr": lr_body},
    ]


def save_checkpoint(
    path: Path,
    model: FasterRCNN,
    step: int,
    cfg: RetrainConfig,
    classes: list[str],
    *,
    masks: bool,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    state: dict[str, Any] = {
        "format_version": CHECKPOINT_VERSION,
        "kind": CHECKPOINT_KIND,
        "model": model.state_dict(),
        "step": step,
        "retrain_config": declared_dict(cfg),
        "classes": list(classes),
        "masks": masks,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    save_state(path, state)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return load_state(
        path,
        kind=CHECKPOINT_KIND,
        version=CHECKPOINT_VERSION,
        what="detector",
        map_location=map_location,
    )


def train_detector(
    items: list[TrainImage],
    classes: list[str],
    cfg: RetrainConfig,
    assets: AssetsConfig,
    *,
    masks: bool,
    out: Path,
    work: Path,
    log_path: Path,
    seed: int,
    compute: ComputeConfig | None = None,
    pretrained: bool = True,
    stop_after: int | None = None,
) -> FasterRCNN:
    """Train on ``items``; checkpoint to ``work`` (resumed from) and write ``out`` at the end.
    ``stop_after`` stops after that many steps without writing ``out`` (tests)."""
    compute = compute or ComputeConfig(device="cpu")
    device = select_device(compute)
    ddp = Distributed(device)
    device = ddp.local_device(device)
    torch.manual_seed(seed)
    model = build_from_config(cfg, assets, len(classes), masks=masks, pretrained=pretrained)
    model.to(device)
    autocast_backbone_only(model, lambda: autocast(compute, device))
    opt = torch.optim.SGD(
        param_groups(model, cfg),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    heads = model.roi_heads
    assert isinstance(heads, DropRoIHeads)

    def step_fn(step: int) -> StepResult:
        batch = batch_indices(step, len(items), cfg.batch_size, seed)
        mine = [(pos, i) for pos, i in enumerate(batch) if pos % ddp.world == ddp.rank]
        opt.zero_grad(set_to_none=True)
        model.train()
        heads.iteration = step
        total, dropped, foreground = 0.0, 0, 0
        parts: dict[str, float] = {}
        for chunk in range(0, len(mine), cfg.images_per_forward):
            group_items = mine[chunk : chunk + cfg.images_per_forward]
            images, targets = [], []
            for pos, i in group_items:
                gen = torch.Generator().manual_seed(image_seed(seed, step, pos))
                flip = cfg.flip and float(torch.rand((), generator=gen)) < 0.5
                image, target = sample(items[i], flip=flip)
                images.append(image.to(device))
                targets.append({k: v.to(device) for k, v in target.items()})
            torch.manual_seed(image_seed(seed, step, group_items[0][0]))  # scale draw
            losses = model(images, targets)
            loss = sum(v.float() for v in losses.values())
            assert isinstance(loss, torch.Tensor)
            (loss * (len(group_items) / len(batch))).backward()
            total += float(loss.detach()) * len(group_items) / len(batch)
            for k, v in losses.items():
                parts[k] = parts.get(k, 0.0) + float(v.detach()) * len(group_items) / len(batch)
            dropped += heads.last_dropped
            foreground += heads.last_foreground
        ddp.sum_gradients([p for g in opt.param_groups for p in g["params"]])
        opt.step()
        # every process's share: the loss, the RoI counts and the parts of the whole batch
        counts = (round(ddp.sum_value(dropped)), round(ddp.sum_value(foreground)))
        return StepResult(ddp.sum_value(total), columns=counts, parts=ddp.sum_parts(parts))

    def save(path: Path, step: int, opts: Mapping[str, torch.optim.Optimizer] | None) -> None:
        optimizer = None if opts is None else opts["optimizer"]
        save_checkpoint(path, model, step, cfg, classes, masks=masks, optimizer=optimizer)

    train_loop(
        Trainer(
            name="detector",
            model=model,
            optimizers={"optimizer": opt},
            lr_factors=lambda step: {"optimizer": lr_factor(step, cfg)},
            step=step_fn,
            save=save,
            load=lambda path, dev: load_checkpoint(path, map_location=dev),
            logged_lr=lambda: float(opt.param_groups[0]["lr"]),
            columns=("dropped_rois", "foreground_rois"),
            parts=True,
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
