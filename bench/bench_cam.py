"""CAM extraction speed on this machine: images per second of ``multiscale_cams`` (EfficientNet-
Lite0, scales 1.0 / 0.8 / 1.2 with flips = 6 passes), against a reference written the public
code's way in the same run: each of the 6 passes run separately, all C class maps upsampled to
the image and multiplied by the class mask. Rows with border_pad 0 compare like with like
(max_abs_difference should be ~0); rows with the default border_pad show its cost. Writes
bench/results/cam.json.

    .venv/bin/python bench/bench_cam.py [--sizes 256 512] [--classes 20] [--images 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaksam.cam.extract import min_max_normalise, multiscale_cams  # noqa: E402
from weaksam.config import CamConfig  # noqa: E402
from weaksam.models.backbones import build_backbone  # noqa: E402
from weaksam.models.classifier import CamClassifier  # noqa: E402


@torch.no_grad()
def reference_cams(
    model: CamClassifier, image: torch.Tensor, labels: list[int], scales: tuple[float, ...]
) -> torch.Tensor:
    _, h, w = image.shape
    mask = torch.zeros(model.num_classes, 1, 1)
    mask[labels] = 1.0
    total = torch.zeros(model.num_classes, h, w)
    for s in scales:
        x = F.interpolate(
            image[None], size=(round(h * s), round(w * s)), mode="bicubic", align_corners=False
        ).clamp(0, 255)
        for flip in (False, True):
            inp = x.flip(-1) if flip else x
            cam = F.interpolate(
                F.relu(model.cams(inp)), size=(h, w), mode="bilinear", align_corners=False
            )[0]
            total += (cam.flip(-1) if flip else cam) * mask
    return min_max_normalise(total[labels])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = CamClassifier(build_backbone("efficientnet_lite0"), args.classes).eval()
    labels = [1, 4]
    rows = []
    for size, pad in [(s, p) for s in args.sizes for p in (0, CamConfig().border_pad)]:
        cfg = CamConfig(border_pad=pad)
        images = [torch.rand(3, size, size * 4 // 3) * 255 for _ in range(args.images)]
        multiscale_cams(model, images[0], cfg, labels=labels)  # warm-up
        t0 = time.perf_counter()
        for img in images:
            ours = multiscale_cams(model, img, cfg, labels=labels)
        t_ours = (time.perf_counter() - t0) / len(images)
        t0 = time.perf_counter()
        for img in images:
            ref = reference_cams(model, img, labels, cfg.scales)
        t_ref = (time.perf_counter() - t0) / len(images)
        max_diff = float((torch.from_numpy(ours.cams) - ref).abs().max())
        rows.append(
            {
                "border_pad": pad,
                "height": size,
                "width": size * 4 // 3,
                "images_per_second": 1 / t_ours,
                "reference_images_per_second": 1 / t_ref,
                "speedup": t_ref / t_ours,
                "max_abs_difference": max_diff,
            }
        )
        print(rows[-1])
    result = {
        "benchmark": "cam_extraction",
        "backbone": "efficientnet_lite0 (output stride 16)",
        "passes": "scales 1.0, 0.8, 1.2 x flip",
        "classes": args.classes,
        "threads": args.threads,
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    out = REPO / "bench" / "results" / "cam.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
