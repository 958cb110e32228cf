"""RoIAlign on CPU: torchvision's kernel against weaksam's separable matrix form, in one run.

1. The pooling alone, forward + backward, at the embedded detector's sizes: 2 images of 384 x 384
   (stride 16: 24 x 24 x 256 features), 128 sampled RoIs per image into 7 x 7 (box head) and
   32 foreground RoIs into 14 x 14 (mask head).
2. A whole training forward + backward of the embedded Faster R-CNN (config/config.yaml's
   ``retrain`` sizes, 2 images per forward, as the trainer runs it) with each pooler, the two
   interleaved so that the machine's load hits both alike.

Writes bench/results/roi_align.json with the machine. Usage:

    .venv/bin/python bench/bench_roi_align.py [--threads 2] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torchvision.ops import MultiScaleRoIAlign

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.config import load_config_file  # noqa: E402
from weaksam.models.roi_align import (  # noqa: E402
    SeparableRoIAlign,
    reference_roi_align,
    separable_roi_align,
)
from weaksam.retrain.train import build_from_config  # noqa: E402


def _boxes(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size * 0.8
    wh = torch.rand(n, 2, generator=gen) * size * 0.5 + 8
    return torch.cat((xy, (xy + wh).clamp(max=size)), dim=1)


def _time(fn: Callable[[], None], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _pass(
    op: Callable[..., torch.Tensor],
    feats: torch.Tensor,
    boxes: list[torch.Tensor],
    size: tuple[int, int],
    grad: torch.Tensor,
) -> Callable[[], None]:
    def run() -> None:
        y = op(feats, boxes, size, 1 / 16, 2)
        torch.autograd.grad(y, feats, grad)

    return run


def pooling(repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 256, 24, 24, generator=gen, requires_grad=True)
    out: dict[str, Any] = {}
    for name, rois, size in (("box_7x7", 128, (7, 7)), ("mask_14x14", 32, (14, 14))):
        boxes = [_boxes(rois, 384, gen) for _ in range(2)]
        grad = torch.randn(2 * rois, 256, *size, generator=gen)
        row: dict[str, Any] = {"rois_per_image": rois}
        for label, op in (("torchvision", reference_roi_align), ("separable", separable_roi_align)):
            row[f"{label}_ms"] = round(_time(_pass(op, feats, boxes, size, grad), repeats) * 1e3, 2)
        a = reference_roi_align(feats, boxes, size, 1 / 16, 2)
        b = separable_roi_align(feats, boxes, size, 1 / 16, 2)
        row["max_abs_difference"] = float((a - b).abs().max())
        row["speedup"] = round(row["torchvision_ms"] / row["separable_ms"], 2)
        out[name] = row
    return out


def training_step(steps: int) -> dict[str, Any]:
    cfg = load_config_file(REPO / "config" / "config.yaml")
    torch.manual_seed(0)
    model = build_from_config(cfg.retrain, cfg.assets, 5, masks=False, pretrained=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 256, 256, generator=gen) for _ in range(2)]
    targets = [
        {"boxes": _boxes(3, 256, gen), "labels": torch.randint(1, 6, (3,), generator=gen)}
        for _ in range(2)
    ]
    separable = model.roi_heads.box_roi_pool
    assert isinstance(separable, SeparableRoIAlign)
    plain = MultiScaleRoIAlign(
        separable.featmap_names, separable.output_size, separable.sampling_ratio
    )
    times: dict[str, list[float]] = {"torchvision": [], "separable": []}
    for k in range(steps + 1):
        for label, pool in (("torchvision", plain), ("separable", separable)):
            model.roi_heads.box_roi_pool = pool
            torch.manual_seed(k)  # the same scale draw for both
            t = time.perf_counter()
            losses = model(images, targets)
            sum(losses.values()).backward()
            if k:  # the first is a warm-up
                times[label].append(time.perf_counter() - t)
            for p in params:
                p.grad = None
    tv, sep = (statistics.median(times[k]) for k in ("torchvision", "separable"))
    return {
        "images_per_forward": 2,
        "train_sizes": list(cfg.retrain.train_sizes),
        "rois_per_image": cfg.retrain.sizes.rois_per_image,
        "torchvision_s": round(tv, 4),
        "separable_s": round(sep, 4),
        "speedup": round(tv / sep, 2),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "roi_align.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "threads": args.threads,
        "pooling_forward_backward": pooling(args.repeats),
        "faster_rcnn_training_forward_backward": training_step(args.steps),
        "machine": machine_info(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
