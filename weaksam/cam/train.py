"""Training the CAM classifier on image-level labels only.

BCE on the multi-hot labels; AdamW (backbone at ``backbone_lr_mult`` of the head's rate); linear
warm-up then cosine decay; random rescale (``scale_jitter``) and horizontal flip, then a random
square crop (or padding) of ``train_size``. Every random choice is drawn from generators seeded by
(seed, step), so a run resumed from a checkpoint continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from weaksam.cam.imaging import to_tensor
from weaksam.compute import autocast, select_device
from weaksam.config import AssetsConfig, CamConfig, ComputeConfig
from weaksam.data.images import load_rgb
from weaksam.data.manifest import Manifest
from weaksam.dependencies import declared_dict
from weaksam.models.backbones import (
    build_backbone,
    channels_last,
    freeze_batchnorm,
    freeze_parameters,
)
from weaksam.models.classifier import CamClassifier
from weaksam.training import (
    Distributed,
    StepResult,
    Trainer,
    load_state,
    save_state,
    train_loop,
)

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


def build_classifier(
    cfg: CamConfig, assets: AssetsConfig, num_classes: int, *, pretrained: bool = True
) -> CamClassifier:
    weights = {"vgg16": assets.vgg16, "resnet50": assets.resnet50}.get(cfg.backbone)
    backbone = build_backbone(
        cfg.backbone, weights, pretrained=pretrained, output_stride=cfg.output_stride
    )
    if cfg.freeze_bn:
        freeze_batchnorm(backbone)
    if cfg.backbone_lr_mult == 0:
        freeze_parameters(backbone)
    model = CamClassifier(
        backbone, num_classes, dropout=cfg.dropout, neck_channels=cfg.neck_channels
    )
    return channels_last(model)


def multi_hot(labels: list[list[int]], num_classes: int) -> torch.Tensor:
    """(N, C) float targets from per-image class-id lists."""
    target = torch.zeros(len(labels), num_classes)
    for i, ids in enumerate(labels):
        target[i, ids] = 1.0
    return target


def rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """(B, 3, H, W) rotated by ``degrees`` (counter-clockwise) about the centre, same size, the
    corners filled by reflection (no constant borders for the classifier to learn)."""
    a = math.radians(degrees)
    _, _, h, w = image.shape
    # affine_grid works in [-1, 1] per axis: scale the rotation by the aspect ratio
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a) * h / w, 0.0], [math.sin(a) * w / h, math.cos(a), 0.0]],
        dtype=image.dtype,
    )[None].expand(image.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(
        image, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def augment(
    image: torch.Tensor,
    size: int,
    jitter: tuple[float, float],
    gen: torch.Generator,
    *,
    max_rotation: float = 0.0,
) -> torch.Tensor:
    """(3, H, W) in [0, 255] -> (3, size, size): rescale so the shorter side is size * U(jitter),
    flip with probability 1/2, rotate by U(-max_rotation, max_rotation) degrees (when above 0),
    reflect-pad a side shorter than ``size`` (no constant borders for the classifier to learn),
    then take a random ``size`` x ``size`` crop."""
    _, h, w = image.shape
    scale = jitter[0] + (jitter[1] - jitter[0]) * float(torch.rand((), generator=gen))
    factor = size * scale / min(h, w)
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    x = F.interpolate(
        image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
    )
    if float(torch.rand((), generator=gen)) < 0.5:
        x = x.flip(-1)
    if max_rotation > 0:
        x = rotate(x, max_rotation * (2 * float(torch.rand((), generator=gen)) - 1))
    ph, pw = max(0, size - nh), max(0, size - nw)
    if ph or pw:
        oy = int(torch.randint(0, ph + 1, (), generator=gen))
        ox = int(torch.randint(0, pw + 1, (), generator=gen))
        mode = "reflect" if ph < nh and pw < nw else "replicate"
        x = F.pad(x, (ox, pw - ox, oy, ph - oy), mode=mode)
    x = x[0]
    cy = int(torch.randint(0, x.shape[1] - size + 1, (), generator=gen))
    cx = int(torch.randint(0, x.shape[2] - size + 1, (), generator=gen))
    return x[:, cy : cy + size, cx : cx + size]


class StepBatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, float]]):
    """Item ``step`` is that step's batch: indices from a permutation seeded by (seed, epoch),
    augmentations seeded by (seed, step, position). Under torchrun, process ``rank`` of
    ``world`` gets the positions ``rank``, ``rank + world``, ...; the item's last value is that
    share of the batch (1 for one process)."""

    def __init__(
        self,
        paths: list[str],
        targets: torch.Tensor,
        cfg: CamConfig,
        seed: int,
        *,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.paths, self.targets, self.cfg, self.seed = paths, targets, cfg, seed
        self.batch = min(cfg.batch_size, len(paths))
        self.per_epoch = max(1, len(paths) // self.batch)
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return self.cfg.iterations

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        perm = torch.randperm(
            len(self.paths), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        )
        return perm[k * self.batch : (k + 1) * self.batch]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        idx = self.indices(step)
        mine = [pos for pos in range(len(idx)) if pos % self.world == self.rank]
        images = []
        for pos in mine:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1024 + pos)
            jitter = (self.cfg.scale_jitter[0], self.cfg.scale_jitter[1])
            image = to_tensor(load_rgb(Path(self.paths[int(idx[pos])])))
            images.append(
                augment(image, self.cfg.train_size, jitter, gen, max_rotation=self.cfg.max_rotation)
            )
        size = self.cfg.train_size
        stacked = torch.stack(images) if images else torch.zeros((0, 3, size, size))
        return stacked, self.targets[idx[mine]], len(mine) / len(idx)


def lr_factor(step: int, cfg: CamConfig) -> float:
    """Linear warm-up to 1 over ``warmup_iterations``, then cosine decay to 0 at ``iterations``."""
    if step < cfg.warmup_iterations:
        return (step + 1) / cfg.warmup_iterations
    span = max(1, cfg.iterations - cfg.warmup_iterations)
    return 0.5 * (1.0 + math.cos(math.pi * (step - cfg.warmup_iterations) / span))


def _optimizer(model: CamClassifier, cfg: CamConfig) -> torch.optim.Optimizer:
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {
                "params": backbone,
                "lr": cfg.lr * cfg.backbone_lr_mult,
                "base_lr": cfg.lr * cfg.backbone_lr_mult,
            },
            {
                "params": [*model.neck.parameters(), *model.head.parameters()],
                "lr": cfg.lr,
                "base_lr": cfg.lr,
            },
        ],
        weight_decay=cfg.weight_decay,
    )


def save_checkpoint(
    path: Path,
    model: CamClassifier,
    opt: torch.optim.Optimizer | None,
    step: int,
    cfg: CamConfig,
    classes: list[str],
) -> None:
    state: dict[str, Any] = {
        "format_version": CHECKPOINT_VERSION,
        "kind": "cam_classifier",
        "model": model.state_dict(),
        "step": step,
        "cam_config": declared_dict(cfg),
        "classes": list(classes),
    }
    if opt is not None:
        state["optimizer"] = opt.state_dict()
    save_state(path, state)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a classifier checkpoint safely (``weights_only``) and check its kind and version."""
    return load_state(
        path,
        kind="cam_classifier",
        version=CHECKPOINT_VERSION,
        what="CAM classifier",
        map_location=map_location,
    )


def train_classifier(
    manifest: Manifest,
    split: str,
    cfg: CamConfig,
    assets: AssetsConfig,
    *,
    out: Path,
    work: Path,
    seed: int,
    log_path: Path,
    workers: int = 0,
    compute: ComputeConfig | None = None,
    stop_after: int | None = None,
) -> CamClassifier:
    """Train on ``split`` of ``manifest``; checkpoint to ``work`` every ``checkpoint_every`` steps
    (resuming from it when present) and write the final weights to ``out``. Under torchrun,
    every process takes its share of each batch and the gradients are summed. ``stop_after``
    ends the run after that many steps without writing ``out`` (tests)."""
    torch.manual_seed(seed)
    frame = manifest.split(split)
    classes = list(manifest.classes)
    compute = compute or ComputeConfig(device="cpu")
    device = select_device(compute)
    ddp = Distributed(device)
    device = ddp.local_device(device)
    model = build_classifier(cfg, assets, len(classes)).to(device)
    opt = _optimizer(model, cfg)
    data = StepBatches(
        frame["path"].tolist(),
        multi_hot(frame["labels"].tolist(), len(classes)),
        cfg,
        seed,
        rank=ddp.rank,
        world=ddp.world,
    )
    batches: Iterator[tuple[torch.Tensor, torch.Tensor, float]] | None = None
    params = [p for group in opt.param_groups for p in group["params"]]

    def step_fn(step: int) -> StepResult:
        nonlocal batches
        if batches is None:  # from the step the loop starts at (a resumed run's checkpoint)
            loader = torch.utils.data.DataLoader(
                data,
                batch_size=None,
                sampler=list(range(step, cfg.iterations)),
                num_workers=workers,
                persistent_workers=False,
            )
            batches = iter(loader)
        images, targets, share = next(batches)
        torch.manual_seed(seed * 1_000_003 + step)  # dropout: the same draw when resumed
        opt.zero_grad(set_to_none=True)
        value = 0.0
        if len(images):
            images, targets = images.to(device), targets.to(device)
            with autocast(compute, device):
                logits = model(images)
            # this process's share of the batch mean: the shares sum to the whole batch's
            loss = F.binary_cross_entropy_with_logits(logits.float(), targets) * share
            loss.backward()
            value = loss.item()
        ddp.sum_gradients(params)
        opt.step()
        return StepResult(ddp.sum_value(value))

    def save(path: Path, step: int, opts: Mapping[str, torch.optim.Optimizer] | None) -> None:
        save_checkpoint(
            path, model, None if opts is None else opts["optimizer"], step, cfg, classes
        )

    model.train()
    train_loop(
        Trainer(
            name="classifier",
            model=model,
            optimizers={"optimizer": opt},
            lr_factors=lambda step: {"optimizer": lr_factor(step, cfg)},
            step=step_fn,
            save=save,
            load=lambda path, dev: load_checkpoint(path, map_location=dev),
            logged_lr=lambda: float(opt.param_groups[1]["lr"]),  # the head's
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


def predict_scores(model: CamClassifier, paths: list[str], *, max_side: int) -> np.ndarray:
    """Sigmoid class probabilities (N, C) of whole images, longer side resized to ``max_side``."""
    model.eval()
    out = []
    with torch.no_grad():
        for p in paths:
            x = to_tensor(load_rgb(Path(p)))
            factor = max_side / max(x.shape[1:])
            size = (max(1, round(x.shape[1] * factor)), max(1, round(x.shape[2] * factor)))
            x = F.interpolate(
                x[None], size=size, mode="bilinear", align_corners=False, antialias=True
            )
            out.append(torch.sigmoid(model(x))[0].numpy())
    return np.stack(out) if out else np.zeros((0, model.num_classes), np.float32)
