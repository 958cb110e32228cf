"""Training a WSOD head (WSDDN, OICR or MIST) on one split's proposals and image labels.

- One forward per image; ``batch_size`` images per optimiser step, with gradients accumulated
  (each image's loss divided by the batch), so one device reaches the paper's batch of 8.
- Several processes (``torchrun``): each takes the batch positions ``pos % world == rank`` and the
  gradients are summed with ``all_reduce`` before the step (NCCL on CUDA, gloo on the CPU). Every
  random draw (augmentation, dropout) is seeded by (seed, step, position), so 1 or N processes
  and a resumed run train the same model up to floating-point summation order.
- Adam with L2 weight decay (not AdamW); biases at ``bias_lr_mult`` x the rate without decay
  (OICR's refinement biases excepted, see ``param_groups``); refinement and regression layers at
  ``refine_lr_mult`` x (the head's own by default: OICR x10); linear warm-up from
  ``warmup_factor``; x ``gamma`` at each of ``lr_steps``.
- bf16 autocast on CUDA; the losses are computed in fp32.
- A checkpoint every ``checkpoint_every`` steps, resumed from when present.
- Optional Concrete DropBlock, trained adversarially: after the detector's step a fresh forward
  (new dropout and block draws, the same images) and a step of the block generator on
  -``adversarial_weight`` x the loss, with a schedule of its own (``dropblock_lr_factor``: MIST's
  VOC config multiplies its rate by 3 at the detector's steps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from weaksam.compute import autocast, select_device
from weaksam.config import AssetsConfig, ComputeConfig, WsodConfig
from weaksam.dependencies import declared_dict
from weaksam.models.backbones import (
    build_backbone,
    freeze_batchnorm,
    freeze_parameters,
    load_vgg16_fc,
)
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
from weaksam.wsod.data import ProposalSource, training_image
from weaksam.wsod.losses import image_loss
from weaksam.wsod.model import ConcreteDropBlock, Head, WsodNet

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
CHECKPOINT_KIND = "wsod"


def config_dict(cfg: WsodConfig) -> dict[str, Any]:
    """What a checkpoint records of the config: the keys the training job declares."""
    return declared_dict(cfg)


def build_wsod_net(
    cfg: WsodConfig, assets: AssetsConfig, num_classes: int, head: Head, *, pretrained: bool = True
) -> WsodNet:
    backbone = build_backbone(
        cfg.backbone,
        assets.vgg16 if cfg.backbone == "vgg16_oicr" else None,
        pretrained=pretrained,
        output_stride=cfg.output_stride,
    )
    freeze_batchnorm(backbone)  # one image per forward
    if cfg.backbone_lr_mult == 0:
        freeze_parameters(backbone)
    dropblock = None
    if cfg.dropblock.enabled:
        dropblock = ConcreteDropBlock(
            cfg.roi_channels or backbone.channels,
            tau=cfg.dropblock.tau,
            pool_size=cfg.pool_size,
            block=cfg.dropblock.block_size,
            temperature=cfg.dropblock.temperature,
        )
    net = WsodNet(
        backbone,
        num_classes,
        head=head,
        refinements=cfg.refinements,
        roi_channels=cfg.roi_channels,
        fc_dim=cfg.fc_dim,
        pool_size=cfg.pool_size,
        dropout=cfg.dropout,
        dropblock=dropblock,
    )
    # VGG16-OICR's 4096-wide fc6 / fc7 start from ImageNet (wetectron loads them over the
    # N(0, 0.01) init); a narrower or reduced head keeps its random start
    vgg = pretrained and cfg.backbone == "vgg16_oicr" and bool(assets.vgg16)
    if vgg and load_vgg16_fc(net.fc, str(assets.vgg16)):
        logger.info("WSOD fc6 / fc7 from the ImageNet VGG16 in %s", assets.vgg16)
    return net


def lr_factor(step: int, cfg: WsodConfig) -> float:
    return step_lr_factor(
        step,
        warmup_iterations=cfg.warmup_iterations,
        warmup_factor=cfg.warmup_factor,
        lr_steps=cfg.lr_steps,
        gamma=cfg.gamma,
    )


def dropblock_lr_factor(step: int, cfg: WsodConfig) -> float:
    """The block generator's schedule: ``dropblock.gamma`` at its steps (the detector's when
    unset) after its warm-up (the detector's length when unset)."""
    db = cfg.dropblock
    return step_lr_factor(
        step,
        warmup_iterations=cfg.warmup_iterations
        if db.warmup_iterations is None
        else db.warmup_iterations,
        warmup_factor=db.warmup_factor,
        lr_steps=cfg.lr_steps if db.lr_steps is None else db.lr_steps,
        gamma=db.gamma,
    )


HEAD_REFINE_LR_MULT: dict[str, float] = {"wsddn": 1.0, "oicr": 10.0, "mist": 1.0}


def refine_ramp(step: int, cfg: WsodConfig) -> float:
    """The refinement losses' weight at 0-based ``step``: (step + 1) / N over the first N =
    ``refine_ramp_iterations`` steps, 1 after (and always with N = 0)."""
    n = cfg.refine_ramp_iterations
    return 1.0 if n <= 0 else min(1.0, (step + 1) / n)


def refine_lr_mult(cfg: WsodConfig, head: Head) -> float:
    """The refinement layers' rate multiplier: the config's, else the head's own (OICR x10,
    METHOD.md 7.2; MIST x1, wetectron's solver has none)."""
    return HEAD_REFINE_LR_MULT[head] if cfg.refine_lr_mult is None else cfg.refine_lr_mult


def param_groups(
    named: list[tuple[str, nn.Parameter]], *, lr: float, cfg: WsodConfig, head: Head
) -> list[dict[str, Any]]:
    """Weights at ``lr`` with weight decay, biases (parameters named ``bias``, as wetectron's
    solver tells them; a BatchNorm scale is a weight) at ``bias_lr_mult`` x without; the
    refinement and box layers take ``refine_lr_mult(cfg, head)`` on top, the backbone
    ``backbone_lr_mult``.

    OICR's refinement layers follow its mmcv optimiser: a parameter matched by the custom key
    ``refine`` gets that key's rate and the normal decay and skips the bias rules, so their
    biases run at x10 with decay, like their weights (MIST's, under wetectron's solver, get x2
    and no decay on top of the multiplier)."""
    refine = refine_lr_mult(cfg, head)
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for name, p in named:
        is_refine = name.startswith(("refine.", "bbox_pred."))
        is_bias = name.endswith(".bias") and not (is_refine and head == "oicr")
        is_backbone = name.startswith("backbone.")
        groups.setdefault((is_bias, is_refine, is_backbone), []).append(p)
    out = []
    for (is_bias, is_refine, is_backbone), params in sorted(groups.items()):
        base = lr * (cfg.bias_lr_mult if is_bias else 1.0)
        base *= refine if is_refine else 1.0
        base *= cfg.backbone_lr_mult if is_backbone else 1.0
        out.append(
            {
                "params": params,
                "lr": base,
                "base_lr": base,
                "weight_decay": 0.0 if is_bias else cfg.weight_decay,
            }
        )
    return out


def save_checkpoint(
    path: Path,
    model: WsodNet,
    step: int,
    cfg: WsodConfig,
    classes: list[str],
    *,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    proposals: str = "",
) -> None:
    state: dict[str, Any] = {
        "format_version": CHECKPOINT_VERSION,
        "kind": CHECKPOINT_KIND,
        "head": model.head,
        "model": model.state_dict(),
        "step": step,
        "wsod_config": config_dict(cfg),
        "classes": list(classes),
        "proposals": proposals,
    }
    for key, opt in (optimizers or {}).items():  # "optimizer_detector", "optimizer_dropblock"
        state[key] = opt.state_dict()
    save_state(path, state)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a WSOD checkpoint (``weights_only``) and check its kind and version."""
    return load_state(
        path,
        kind=CHECKPOINT_KIND,
        version=CHECKPOINT_VERSION,
        what="WSOD",
        map_location=map_location,
    )


@dataclass(frozen=True)
class _Run:
    """What every step of one training run shares."""

    rows: list[Any]
    proposals: ProposalSource
    num_classes: int
    cfg: WsodConfig
    head: Head
    seed: int
    compute: ComputeConfig


def draw_seed(seed: int, draw: int) -> int:
    """The seed of forward ``draw`` of an image in a step (its dropout and DropBlock draws):
    ``seed`` itself for the first, a hash of (seed, draw) for the next. The CPU generator keeps
    only the low 32 bits of a seed, so they must differ there."""
    if draw == 0:
        return seed
    state = np.random.SeedSequence([seed, draw]).generate_state(1, np.uint32)
    return int(state[0])


def _accumulate(
    model: WsodNet,
    run: _Run,
    step: int,
    mine: list[tuple[int, int]],
    batch: int,
    sign: float,
    *,
    draw: int = 0,
) -> tuple[float, dict[str, float]]:
    """Forward and backward this process's images ``mine`` (position, index) of one step, each
    loss times sign / batch. Returns the summed loss and its parts over these images. ``draw``
    numbers the forwards of a step: each has its own dropout and DropBlock draws (the same
    images and augmentation), reproducible on resumption."""
    device = next(model.parameters()).device
    model.train()
    total = 0.0
    parts: dict[str, float] = {}
    for pos, i in mine:
        gen = torch.Generator().manual_seed(image_seed(run.seed, step, pos))
        sample = training_image(run.rows[i], run.proposals, run.num_classes, run.cfg, gen)
        torch.manual_seed(draw_seed(image_seed(run.seed, step, pos), draw))
        rois = sample.rois.to(device)
        with autocast(run.compute, device):
            out = model(sample.image[None].to(device), rois)
        loss = image_loss(
            out,
            rois,
            sample.labels.to(device),
            head=run.head,
            mist=run.cfg.mist,
            oicr=run.cfg.oicr,
            refine_weight=refine_ramp(step, run.cfg),
        )
        (loss.total * (sign / batch)).backward()
        total += float(loss.total.detach()) / batch
        for k, v in loss.parts.items():
            parts[k] = parts.get(k, 0.0) + v / batch
    return total, parts


def _step(opt: torch.optim.Optimizer, ddp: Distributed, params: list[nn.Parameter]) -> None:
    ddp.sum_gradients(params)
    opt.step()


def train_wsod(
    frame: pd.DataFrame,
    classes: list[str],
    proposals: ProposalSource,
    cfg: WsodConfig,
    head: Head,
    assets: AssetsConfig,
    *,
    out: Path,
    work: Path,
    log_path: Path,
    seed: int,
    compute: ComputeConfig | None = None,
    pretrained: bool = True,
    stop_after: int | None = None,
) -> WsodNet:
    """Train ``head`` on the images of ``frame`` (manifest rows) with their proposals; checkpoint
    to ``work`` (resuming from it) and write the final model to ``out``. ``stop_after`` ends the
    run after that many steps without writing ``out`` (for tests of resumption)."""
    compute = compute or ComputeConfig(device="cpu")
    device = select_device(compute)
    ddp = Distributed(device)
    device = ddp.local_device(device)
    torch.manual_seed(seed)
    model = build_wsod_net(cfg, assets, len(classes), head, pretrained=pretrained).to(device)
    detector = model.detector_parameters()
    opt = torch.optim.Adam(param_groups(detector, lr=cfg.lr, cfg=cfg, head=head))
    optimizers: dict[str, torch.optim.Optimizer] = {"optimizer_detector": opt}
    opt_cdb: torch.optim.Optimizer | None = None
    if model.dropblock is not None:
        named = [(n, p) for n, p in model.dropblock.named_parameters()]
        opt_cdb = torch.optim.Adam(param_groups(named, lr=cfg.dropblock.lr, cfg=cfg, head=head))
        optimizers["optimizer_dropblock"] = opt_cdb
    rows = list(frame.itertuples(index=False))
    run = _Run(rows, proposals, len(classes), cfg, head, seed, compute)

    def step_fn(step: int) -> StepResult:
        batch = batch_indices(step, len(rows), cfg.batch_size, seed)
        mine = [(pos, i) for pos, i in enumerate(batch) if pos % ddp.world == ddp.rank]
        opt.zero_grad(set_to_none=True)
        loss_sum, parts = _accumulate(model, run, step, mine, len(batch), 1.0)
        loss_sum = ddp.sum_value(loss_sum)
        _step(opt, ddp, [p for _, p in detector])
        if opt_cdb is not None and model.dropblock is not None:
            # The generator's turn: a fresh forward (new draws), ascending the detector's loss.
            opt_cdb.zero_grad(set_to_none=True)
            weight = -cfg.dropblock.adversarial_weight
            _accumulate(model, run, step, mine, len(batch), weight, draw=1)
            _step(opt_cdb, ddp, list(model.dropblock.parameters()))
        return StepResult(loss_sum, parts=ddp.sum_parts(parts))  # the whole batch's parts

    def save(path: Path, step: int, opts: Mapping[str, torch.optim.Optimizer] | None) -> None:
        save_checkpoint(
            path, model, step, cfg, classes, optimizers=opts, proposals=str(proposals.path)
        )

    train_loop(
        Trainer(
            name=f"wsod {head}",
            model=model,
            optimizers=optimizers,
            lr_factors=lambda step: {
                "optimizer_detector": lr_factor(step, cfg),
                "optimizer_dropblock": dropblock_lr_factor(step, cfg),
            },
            step=step_fn,
            save=save,
            load=lambda path, dev: load_checkpoint(path, map_location=dev),
            logged_lr=lambda: float(opt.param_groups[0]["lr"]),
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
