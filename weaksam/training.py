"""What every trainer shares: the training loop, processes under ``torchrun``, per-step batches
and seeds, checkpoints.

``train_loop`` runs the CAM classifier, the WSOD heads and the retrained detectors alike: it
resumes from the work checkpoint, sets each step's learning rates, calls the trainer's step,
writes the training log, checkpoints every ``checkpoint_every`` steps and writes the final model.
A trainer supplies its model, optimizers, schedule and step (:class:`Trainer`).

Every random draw of a training step is seeded by (seed, step, position in the batch), so one or
several processes, and a run resumed from a checkpoint, see the same images and draws.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from weaksam.io import atomic_path
from weaksam.logs import progress

logger = logging.getLogger(__name__)


class Distributed:
    """Rank and world size from the ``torchrun`` environment; a no-op for one process."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.started = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.started = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """This process's GPU (``LOCAL_RANK``) when several processes share a CUDA node."""
        if device.type != "cuda" or self.world == 1:
            return device
        local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(local)
        return local

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """Sum the gradients over the processes. A parameter that got no gradient in any process
        (unused by the forward, e.g. the backbone's classifier) keeps ``grad = None``, so Adam
        leaves it alone exactly as in a single process."""
        if self.world == 1:
            return
        used = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
        dist.all_reduce(used, op=dist.ReduceOp.SUM)
        for p, n in zip(params, used.tolist(), strict=True):
            if n == 0:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def sum_value(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t[0])

    def sum_parts(self, parts: Mapping[str, float]) -> dict[str, float]:
        """Named values (a step's loss parts) summed over the processes; a name that some
        process lacks (it had no image this step) counts 0 there."""
        if self.world == 1:
            return dict(parts)
        gathered: list[dict[str, float]] = [{} for _ in range(self.world)]
        dist.all_gather_object(gathered, dict(parts))
        out: dict[str, float] = {}
        for one in gathered:
            for name, value in one.items():
                out[name] = out.get(name, 0.0) + value
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.started:
            dist.destroy_process_group()


def main_process() -> bool:
    """Whether this is process 0 of a torchrun job (or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def batch_indices(step: int, n: int, batch: int, seed: int) -> list[int]:
    """Image indices of ``step``: consecutive slices of a permutation seeded per epoch."""
    batch = min(batch, n)
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[k * batch : (k + 1) * batch].tolist()


def image_seed(seed: int, step: int, pos: int) -> int:
    return ((seed * 1_000_003 + step) * 1024 + pos) % (2**63)


def step_lr_factor(
    step: int,
    *,
    warmup_iterations: int,
    warmup_factor: float,
    lr_steps: tuple[int, ...],
    gamma: float,
) -> float:
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup_iterations``, times ``gamma`` for
    every step in ``lr_steps`` already passed (the detectron2 / wetectron schedule)."""
    factor: float = gamma ** sum(step >= s for s in lr_steps)
    if step < warmup_iterations:
        alpha = step / warmup_iterations
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def save_state(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary name beside ``path``, renamed at the end."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# What each checkpoint kind is, for errors that name what a file is and what was expected.
CHECKPOINT_KINDS = {
    "detector": "a retrained Faster R-CNN / Mask R-CNN (detector/{head}/model.pt, "
    "maskrcnn/{head}/model.pt)",
    "dino": "a retrained DINO-style DETR (dino/{head}/model.pt)",
    "mask2former": "a retrained Mask2Former (mask2former/{head}/model.pt)",
    "wsod": "a WSOD head (wsod/{head}/model.pt), which scores proposals: it needs a proposal "
    "store, not images alone",
    "cam_classifier": "the CAM classifier (cam/classifier.pt), which gives image labels and "
    "CAMs, not boxes",
}


class ModelKindError(ValueError):
    """A file that is not the weaksam checkpoint a command needs."""


def load_state(
    path: str | Path,
    *,
    kind: str,
    version: int,
    what: str,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a weaksam checkpoint safely (``weights_only``) and check its ``kind`` and version;
    ``what`` names it in the errors. A checkpoint of another kind is named with what it is
    (``CHECKPOINT_KINDS``); a pickled or foreign file is refused."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # missing, a folder, unreadable: the system's own message says which
    except Exception as exc:  # corrupt, truncated, pickled or foreign file
        raise ModelKindError(
            f"{path}: cannot load {what} checkpoint: not a weaksam checkpoint that loads with "
            f"weights_only=True ({exc})"
        ) from exc
    expected = CHECKPOINT_KINDS.get(kind, f"a {what} checkpoint").split(", which")[0]
    if not isinstance(state, dict) or "kind" not in state:
        raise ModelKindError(f"{path}: not a weaksam checkpoint (no 'kind'); expected {expected}")
    if state["kind"] != kind:
        found = CHECKPOINT_KINDS.get(str(state["kind"]), f"a checkpoint of kind {state['kind']!r}")
        raise ModelKindError(f"{path} is {found}; expected {expected}")
    if state.get("format_version") != version:
        raise ValueError(
            f"{path}: a {what} checkpoint of format version {state.get('format_version')}; "
            f"this weaksam reads version {version}"
        )
    return state


@dataclass
class StepResult:
    """What one training step did: its loss (summed over the processes) and what it logs."""

    loss: float
    columns: tuple[int | float | str, ...] = ()  # the values of ``Trainer.columns``
    parts: Mapping[str, float] = field(default_factory=dict)  # named losses (``Trainer.parts``)


@dataclass
class Trainer:
    """What a trainer gives ``train_loop``.

    ``optimizers`` maps the key each optimizer's state has in the checkpoint to the optimizer;
    ``lr_factors(step)`` gives each one's factor of its groups' ``base_lr`` at ``step``;
    ``step(step)`` runs one step (forward, backward, optimizer steps, over the processes);
    ``save(path, step, optimizers)`` writes a checkpoint (with the optimizers' states, or the
    final model without); ``load(path, device)`` reads one back, checking its kind;
    ``logged_lr()`` is the rate the log shows. The log has the columns step, loss, lr, then
    ``columns``, seconds and, with ``parts``, the named losses.
    """

    name: str
    model: nn.Module
    optimizers: Mapping[str, torch.optim.Optimizer]
    lr_factors: Callable[[int], Mapping[str, float]]
    step: Callable[[int], StepResult]
    save: Callable[[Path, int, Mapping[str, torch.optim.Optimizer] | None], None]
    load: Callable[[Path, torch.device], dict[str, Any]]
    logged_lr: Callable[[], float]
    columns: tuple[str, ...] = ()
    parts: bool = False


def train_loop(
    trainer: Trainer,
    *,
    iterations: int,
    checkpoint_every: int,
    work: Path,
    out: Path,
    log_path: Path,
    ddp: Distributed,
    device: torch.device,
    stop_after: int | None = None,
) -> int:
    """Train from the checkpoint ``work`` (when present) to ``iterations`` steps, checkpointing
    to ``work`` every ``checkpoint_every`` steps and at the end, then write the final model to
    ``out`` (process 0 writes; all processes step). ``stop_after`` ends the run after that many
    steps without writing ``out`` (what a killed run leaves; tests). Returns the step reached."""
    start = 0
    if work.exists():
        state = trainer.load(work, device)
        trainer.model.load_state_dict(state["model"])
        for key, opt in trainer.optimizers.items():
            opt.load_state_dict(state[key])
        start = int(state["step"])
        logger.info("resuming %s training at step %d from %s", trainer.name, start, work)
    end = iterations if stop_after is None else min(iterations, start + stop_after)
    mode = "a" if start > 0 and log_path.exists() else "w"
    log = log_path.open(mode) if ddp.main else None
    if log is not None and mode == "w":
        header = ["step", "loss", "lr", *trainer.columns, "seconds"]
        log.write("\t".join([*header, "parts"] if trainer.parts else header) + "\n")
    t0 = time.perf_counter()
    try:
        for step in progress(range(start, end), desc=trainer.name, total=end - start):
            factors = trainer.lr_factors(step)
            for key, opt in trainer.optimizers.items():
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * factors[key]
            result = trainer.step(step)
            if log is not None:
                fields = [f"{step + 1}", f"{result.loss:.6f}", f"{trainer.logged_lr():.3e}"]
                fields += [str(v) for v in result.columns]
                fields.append(f"{time.perf_counter() - t0:.1f}")
                if trainer.parts:
                    fields.append(" ".join(f"{k}={v:.4f}" for k, v in result.parts.items()))
                log.write("\t".join(fields) + "\n")
            if (step + 1) % checkpoint_every == 0 or step + 1 == iterations:
                if log is not None:
                    log.flush()
                    trainer.save(work, step + 1, trainer.optimizers)
                    logger.info(
                        "%s step %d/%d loss %.4f", trainer.name, step + 1, iterations, result.loss
                    )
                ddp.barrier()
        if end == iterations and ddp.main:
            trainer.model.eval().cpu()
            trainer.save(out, iterations, None)
    finally:
        if log is not None:
            log.close()
        ddp.close()
    return end
