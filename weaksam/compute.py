"""Device and precision choice (DESIGN.md section 6): CUDA when present, bf16 autocast there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from weaksam.config import ComputeConfig


def select_device(cfg: ComputeConfig) -> torch.device:
    """``auto``: CUDA when available, else CPU. ``cuda`` without a GPU is an error."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is 'cuda' but no CUDA device is available")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def use_bf16(cfg: ComputeConfig, device: torch.device) -> bool:
    """bf16 autocast on CUDA (``auto`` or ``bf16``); fp32 on the CPU or with ``fp32``."""
    if cfg.precision == "bf16" and device.type != "cuda":
        raise RuntimeError("compute.precision 'bf16' needs a CUDA device; use 'auto' or 'fp32'")
    return device.type == "cuda" and cfg.precision in ("auto", "bf16")


@contextlib.contextmanager
def autocast(cfg: ComputeConfig, device: torch.device) -> Iterator[None]:
    if use_bf16(cfg, device):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
