"""segment-anything's own mask post-processing, the reference for weaksam's two-matmul
upsampling (tests/test_sam.py, bench/sam_limit.py)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from segment_anything.modeling import Sam


def sam_postprocess(
    low_res: torch.Tensor, input_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """(N, 256, 256) decoder logits -> (N, H, W): ``Sam.postprocess_masks`` itself (bilinear to
    1024, crop to the resized image, bilinear to the image), called without building a SAM."""
    owner = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024))
    out: torch.Tensor = Sam.postprocess_masks(owner, low_res[:, None], input_hw, hw)  # type: ignore[arg-type]
    return out[:, 0]
