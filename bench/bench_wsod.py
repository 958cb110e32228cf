"""WSOD speed: the pseudo-label step against a per-class Python-loop reference, and training
iterations per second of each head.

1. OICR and MIST pseudo-labels, weaksam's vectorised rules against the loop references in
   tests/reference_wsod.py, on the same random problems (R proposals, 20 classes, 2 positive).
   The outputs are checked to agree before anything is timed.
2. One training step (forward, losses, backward, Adam) per head on the embedded config's network
   (EfficientNet-Lite0, 256 x 341 image, R proposals), image decoding excluded; and on the paper's
   VGG16-OICR network with random weights when ``--vgg`` is given (slow on a CPU).

Writes bench/results/wsod.json with the machine.

    .venv/bin/python bench/bench_wsod.py [--threads 2] [--vgg]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402

from tests.reference_wsod import reference_mist, reference_oicr  # noqa: E402
from weaksam.config import AssetsConfig, WsodConfig, load_config_file  # noqa: E402
from weaksam.wsod.losses import image_loss  # noqa: E402
from weaksam.wsod.model import HEADS, Head  # noqa: E402
from weaksam.wsod.pseudo_labels import (  # noqa: E402
    greedy_nms,
    mist_pseudo_labels,
    oicr_pseudo_labels,
)
from weaksam.wsod.train import build_wsod_net, param_groups  # noqa: E402


def problem(r: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 400, (r, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 200, (r, 2))], axis=1).astype(np.float32)
    scores = rng.dirichlet(np.ones(k), size=r).astype(np.float32) * rng.uniform(0, 1, (r, 1))
    labels = np.zeros(k, np.float32)
    labels[rng.choice(k, 2, replace=False)] = 1
    return boxes, scores.astype(np.float32), labels


def best_of(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_pseudo_labels(r: int, k: int = 20) -> dict[str, Any]:
    boxes, scores, labels = problem(r, k, seed=r)
    tb, ts, tl = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels)
    out: dict[str, Any] = {"proposals": r, "classes": k}
    for name, rule, ref in (
        ("mist", mist_pseudo_labels, reference_mist),
        ("oicr", oicr_pseudo_labels, reference_oicr),
    ):
        got = rule(tb, ts, tl)
        want = ref(boxes, scores, labels)
        assert got.labels.tolist() == want[0].tolist(), f"{name}: labels differ from the reference"
        t_ours = best_of(lambda rule=rule: rule(tb, ts, tl), 5)
        t_ref = best_of(lambda ref=ref: ref(boxes, scores, labels), 1)
        out[name] = {"weaksam_s": t_ours, "loop_reference_s": t_ref, "speedup": t_ref / t_ours}
    return out


def loop_greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """weaksam's earlier greedy NMS: a Python loop over the candidates, one device sync each."""
    order = torch.sort(scores, descending=True, stable=True).indices
    overlap = box_iou(boxes[order], boxes[order]) > iou
    keep = torch.ones(order.shape[0], dtype=torch.bool, device=boxes.device)
    for i in range(order.shape[0]):
        if keep[i]:
            later = overlap[i].clone()
            later[: i + 1] = False
            keep &= ~later
    return order[keep]


def bench_greedy_nms(n: int, device: str) -> dict[str, Any]:
    """OICR's NMS over ``n`` candidates (early in training most proposals are candidates)."""
    boxes, scores, _ = problem(n, 2, seed=n)
    tb = torch.from_numpy(boxes).to(device)
    ts = torch.from_numpy(scores[:, 0]).to(device)
    assert greedy_nms(tb, ts, 0.5).tolist() == loop_greedy_nms(tb, ts, 0.5).tolist()
    t_new = best_of(lambda: greedy_nms(tb, ts, 0.5).tolist(), 5)
    t_loop = best_of(lambda: loop_greedy_nms(tb, ts, 0.5).tolist(), 3)
    return {"candidates": n, "device": device, "weaksam_s": t_new, "loop_s": t_loop,
            "speedup": t_loop / t_new}  # fmt: skip


def bench_training(cfg: WsodConfig, size: tuple[int, int], r: int, steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"image": list(size), "proposals": r, "backbone": cfg.backbone}
    rng = np.random.default_rng(0)
    h, w = size
    xy = rng.uniform(0, min(h, w) * 0.7, (r, 2))
    rois = torch.from_numpy(
        np.concatenate([xy, xy + rng.uniform(16, min(h, w) * 0.3, (r, 2))], axis=1).astype(
            np.float32
        )
    )
    image = torch.rand(1, 3, h, w) * 255
    labels = torch.zeros(5)
    labels[[1, 3]] = 1
    for head in HEADS:
        torch.manual_seed(0)
        model = build_wsod_net(cfg, AssetsConfig(), 5, head, pretrained=False).train()
        opt = torch.optim.Adam(
            param_groups(model.detector_parameters(), lr=1e-5, cfg=cfg, head="mist")
        )

        def step(model: Any = model, opt: Any = opt, head: Head = head) -> None:
            opt.zero_grad()
            loss = image_loss(
                model(image, rois), rois, labels, head=head, mist=cfg.mist, oicr=cfg.oicr
            )
            loss.total.backward()
            opt.step()

        step()  # warm-up
        t = time.perf_counter()
        for _ in range(steps):
            step()
        per_image = (time.perf_counter() - t) / steps
        out[head] = {
            "seconds_per_image": per_image,
            "iterations_per_second_at_batch": 1.0 / (per_image * cfg.batch_size),
            "batch_size": cfg.batch_size,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--vgg", action="store_true", help="also time the paper's VGG16-OICR")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "pseudo_labels": [bench_pseudo_labels(r) for r in (100, 500, 2000)],
        "greedy_nms": [
            bench_greedy_nms(n, d)
            for d in ("cpu", *(("cuda",) if torch.cuda.is_available() else ()))
            for n in (100, 500, 2000)
        ],
    }
    demo = load_config_file(REPO / "config" / "config.yaml").wsod
    result["training_embedded"] = bench_training(demo, (256, 341), 300, args.steps)
    if args.vgg:
        result["training_vgg16_oicr"] = bench_training(WsodConfig(), (480, 640), 2000, 1)
    result["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    result["date"] = time.strftime("%Y-%m-%d")
    out = REPO / "bench" / "results" / "wsod.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
