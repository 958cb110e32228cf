"""Channels-last (NHWC) against the default layout for the networks of the CPU configs.

For the CAM classifier, the WSOD network and the retrained Faster / Mask R-CNN, each built as
the workflow builds it from ``config/config.yaml`` (ImageNet EfficientNet-Lite0, frozen), one
training step (forward, backward) is timed in both layouts, alternating, ``--repeats`` times in
the same process, at the thread count the workflow gives the job; the record keeps every time,
the median ratio (default / channels-last: above 1, channels-last is faster) and the largest
difference between the two layouts' outputs in evaluation mode. Random images and boxes: only
the layout changes between the two timings, never the work. Results, with the machine, go to
``bench/results/channels_last.json``.

    .venv/bin/python bench/bench_channels_last.py [--repeats 5]
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
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.cam.train import build_classifier  # noqa: E402
from weaksam.config import load_config_files, mask_rcnn_config  # noqa: E402
from weaksam.retrain.train import build_from_config  # noqa: E402
from weaksam.wsod.train import build_wsod_net  # noqa: E402

# proposals per image for the WSOD step: the demo keeps about 10 after NMS, shapes 14
ROIS = 20


def compare(
    name: str,
    model: nn.Module,
    step: Callable[[], None],
    output: Callable[[], torch.Tensor],
    *,
    threads: int,
    repeats: int,
) -> dict[str, Any]:
    """Time ``step`` with ``model`` in the default layout and channels-last, alternating."""
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    outputs = {}
    for layout, fmt in layouts.items():
        model.to(memory_format=fmt)
        step()  # warm-up (mkldnn picks its kernels for the layout)
        model.eval()
        with torch.no_grad():
            outputs[layout] = output()
        model.train()
    for _ in range(repeats):
        for layout, fmt in layouts.items():
            model.to(memory_format=fmt)
            t = time.perf_counter()
            step()
            times[layout].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["contiguous"], times["channels_last"], strict=True)]
    diff = float((outputs["contiguous"] - outputs["channels_last"]).abs().max())
    scale = float(outputs["contiguous"].abs().max())
    record = {
        "threads": threads,
        "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "median_ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "max_output_difference": diff,
        "max_output": scale,
    }
    print(
        f"{name}: default / channels-last {record['median_ratio']} ({threads} threads), "
        f"output difference {diff:.2e} of {scale:.2e}",
        flush=True,
    )
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "channels_last.json")
    args = ap.parse_args()
    cfg = load_config_files([REPO / "config" / "config.yaml"])
    gen = torch.Generator().manual_seed(0)
    results: dict[str, Any] = {}

    # CAM classifier: a batch at train_size, the job's threads (train_classifier: 2)
    classifier = build_classifier(cfg.cam, cfg.assets, 3)
    batch = torch.rand(cfg.cam.batch_size, 3, cfg.cam.train_size, cfg.cam.train_size, generator=gen)

    def classifier_step() -> None:
        classifier(batch * 255).sum().backward()

    results["cam_classifier"] = compare(
        "CAM classifier",
        classifier,
        classifier_step,
        lambda: classifier.cams(batch * 255),
        threads=2,
        repeats=args.repeats,
    )

    # WSOD network (MIST): the batch's images one by one at the training scales, ROIS proposals
    # each, 2 threads
    wsod = build_wsod_net(cfg.wsod, cfg.assets, 3, "mist")
    scales = list(cfg.wsod.train_scales)[: cfg.wsod.batch_size]
    images = [torch.rand(1, 3, s, s, generator=gen) * 255 for s in scales]
    corner = torch.rand(ROIS, 2, generator=gen) * 150
    rois = torch.cat((corner, corner + 16 + torch.rand(ROIS, 2, generator=gen) * 120), dim=1)

    def wsod_step() -> None:
        for image in images:
            out = wsod(image, rois)
            (out.cls.sum() + out.det.sum() + sum(r.sum() for r in out.refine)).backward()

    results["wsod_mist"] = compare(
        "WSOD (MIST)",
        wsod,
        wsod_step,
        lambda: wsod(images[-1], rois).det,
        threads=2,
        repeats=args.repeats,
    )

    # Faster / Mask R-CNN: two images with three boxes (and masks), one thread as in the workflow
    for masks in (False, True):
        rcfg = mask_rcnn_config(cfg) if masks else cfg.retrain
        detector = build_from_config(rcfg, cfg.assets, 3, masks=masks, pretrained=True)
        pictures = [torch.rand(3, 256, 256, generator=gen) for _ in range(2)]
        boxes = torch.tensor([[20.0, 30.0, 120.0, 140.0], [100.0, 60.0, 220.0, 200.0]])
        targets: list[dict[str, torch.Tensor]] = []
        for _ in pictures:
            target = {"boxes": boxes, "labels": torch.tensor([1, 2])}
            if masks:
                m = torch.zeros(2, 256, 256, dtype=torch.uint8)
                for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                    m[k, y1:y2, x1:x2] = 1
                target["masks"] = m
            targets.append(target)
        detector.train()

        def detector_step(
            d: nn.Module = detector, p: list[Any] = pictures, t: list[Any] = targets
        ) -> None:
            torch.manual_seed(0)  # the same training size in both layouts
            losses = d(p, t)
            sum(losses.values()).backward()

        def detector_output(d: nn.Module = detector, p: list[Any] = pictures) -> torch.Tensor:
            return d.backbone(torch.stack(p))["0"]

        name = "mask_rcnn" if masks else "faster_rcnn"
        results[name] = compare(
            name, detector, detector_step, detector_output, threads=1, repeats=args.repeats
        )

    record = {"repeats": args.repeats, "results": results, "machine": machine_info()}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
