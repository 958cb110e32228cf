"""Pieces every trainer shares: processes under ``torchrun``, per-step batches and seeds.

Every random draw of a training step is seeded by (seed, step, position in the batch), so one or
several processes, and a run resumed from a checkpoint, see the same images and draws.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


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

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.started:
            dist.destroy_process_group()


def batch_indices(step: int, n: int, batch: int, seed: int) -> list[int]:
    """Image indices of ``step``: consecutive slices of a permutation seeded per epoch."""
    batch = min(batch, n)
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[k * batch : (k + 1) * batch].tolist()


def image_seed(seed: int, step: int, pos: int) -> int:
    return ((seed * 1_000_003 + step) * 1024 + pos) % (2**63)
