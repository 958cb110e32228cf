"""``weaksam export``: a retrained Faster R-CNN / Mask R-CNN as a file that runs without weaksam.

Two formats, both a trace of the model's single test pass (torchvision's detection models take
their tracing branches, so the graph keeps the image size, the number of detections and the
mask pasting dynamic):

- ``onnx``: for onnxruntime (opset 17);
- ``torchscript``: for ``torch.jit.load``.

The exported graph takes one image, (3, H, W) float32 RGB in 0..1, of any size, and holds the
model's own resize (shorter side ``test_size``, longer side at most ``test_max_size``, padded to a
multiple of 32), normalisation, score threshold, per-class NMS and detections cap. It returns
``boxes`` (N, 4) XYXY in the input's pixels, ``labels`` (N,) from 1, ``scores`` (N,) and, for
Mask R-CNN, ``masks`` (N, 1, H, W) probabilities. What the caller does around it (decode the
image with its EXIF orientation, divide by 255, map label k to class ``k - 1``, threshold masks
at 0.5) is written in a side-car JSON next to the file, with the class names.

Test-time augmentation is not in the graph: it is a loop over sizes and flips plus a pooled NMS,
described in the side-car (``tta``); ``weaksam predict --no-tta`` gives what the exported file
gives.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from weaksam.assets import sha256_of
from weaksam.io import write_json

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
ONNX_OPSET = 17
# The trace's example image. Any size works afterwards: the graph pads to a multiple of 32 before
# the backbone, so the stride-2 "same" paddings the trace records hold for every input.
_EXAMPLE_SIZE = (3, 320, 400)


class _EagerSizedTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform with the test resize computed as the eager model does.

    Eager, torchvision sizes the image as ``floor(side * (test_size / shorter))`` in float64;
    its tracing branch does it in float32, which gives one pixel more or less for some sizes
    (417 x 650 at shorter side 64: 63 eager, 64 traced). Here the size is computed in float64
    tensors (1-D, so the ONNX exporter keeps them float64) and passed to the resize as a size.
    """

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if self.training or target is not None:
            raise RuntimeError("the export transform is for inference only")
        hw = torch._shape_as_tensor(image)[-2:].to(torch.float64)
        limits = torch.tensor([float(self.min_size[-1]), float(self.max_size)], dtype=hw.dtype)
        scale = (limits / torch.stack([hw.min(), hw.max()])).min()
        size = torch.floor(hw * scale).to(torch.int64)
        resized = nn.functional.interpolate(
            image[None],
            size=[size[0], size[1]],  # type: ignore[list-item]  # 0-dim tensors stay dynamic
            mode="bilinear",
            align_corners=False,
        )[0]
        return resized, None


class _SingleImage(nn.Module):
    """The detector on one image, returning a tuple of tensors (what both formats trace)."""

    def __init__(self, model: FasterRCNN, masks: bool) -> None:
        super().__init__()
        self.model = model
        self.masks = masks

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model([image])[0]
        fields = (out["boxes"], out["labels"], out["scores"])
        return (*fields, out["masks"]) if self.masks else fields


def output_names(masks: bool) -> list[str]:
    return ["boxes", "labels", "scores"] + (["masks"] if masks else [])


def sidecar_path(out: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``: the side-car sits next to the file it describes."""
    return out.with_name(out.name + ".json")


def export_model(
    model_path: Path, fmt: Format, out: Path, *, score_threshold: float | None = None
) -> dict[str, Any]:
    """Export ``model_path`` (detector/…/model.pt or maskrcnn/…/model.pt) to ``out`` in ``fmt``
    and write the side-car JSON next to it; returns the side-car's content. The graph keeps the
    model's own score threshold unless ``score_threshold`` is given."""
    from weaksam.models.backbones import fix_same_padding
    from weaksam.retrain.infer import configure_inference
    from weaksam.retrain.stage import load_detector

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    model, rcfg, classes, masks = load_detector(model_path, torch.device("cpu"))
    if score_threshold is not None:
        rcfg = replace(rcfg, score_thresh=score_threshold)
    model.eval()
    configure_inference(model, rcfg)
    model.transform.min_size = (rcfg.test_size,)
    fix_same_padding(model.backbone)  # EfficientNet-Lite0's padding, traceable (a no-op for R50)
    model.transform.__class__ = _EagerSizedTransform
    wrapper = _SingleImage(model, masks).eval()
    example = torch.rand(_EXAMPLE_SIZE, generator=torch.Generator().manual_seed(0))
    names = output_names(masks)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every Python number it records; the ones that matter here
        # (sizes, counts) go through torchvision's tracing branches and stay dynamic.
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            dynamic = {"image": {1: "height", 2: "width"}} | {n: {0: "detections"} for n in names}
            if masks:
                dynamic["masks"] = {0: "detections", 2: "height", 3: "width"}
            torch.onnx.export(
                wrapper,
                (example,),
                str(out),
                opset_version=ONNX_OPSET,
                input_names=["image"],
                output_names=names,
                dynamic_axes=dynamic,
                dynamo=False,
            )
        else:
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
            traced.save(str(out))
    transform = model.transform
    info: dict[str, Any] = {
        "format": fmt,
        "file": out.name,
        "source": {"model": str(model_path), "sha256": sha256_of(model_path)},
        "kind": "mask_rcnn" if masks else "faster_rcnn",
        "classes": list(classes),
        "labels": "label k is classes[k - 1]; 0 is background and never returned",
        "input": {
            "name": "image",
            "shape": ["3", "height", "width"],
            "dtype": "float32",
            "layout": "CHW, RGB",
            "range": [0.0, 1.0],
            "prepare": "decode the image, apply its EXIF orientation, convert to RGB, divide "
            "by 255 (weaksam.data.images.load_rgb does the first three)",
            "batch": "one image per call",
        },
        "in_graph": {
            "resize": {
                "shorter_side": rcfg.test_size,
                "longer_side_max": rcfg.test_max_size,
                "size_divisible": int(transform.size_divisible),
            },
            "normalisation": {
                "formula": "(image - mean) / std, on the 0..1 input",
                "mean": [float(v) for v in transform.image_mean],
                "std": [float(v) for v in transform.image_std],
            },
            "score_threshold": rcfg.score_thresh,
            "nms_iou": rcfg.nms,
            "max_detections": rcfg.max_per_image,
        },
        "outputs": {
            "boxes": "(N, 4) float32, x1 y1 x2 y2 in the input image's pixels",
            "labels": "(N,) int64, from 1",
            "scores": "(N,) float32, descending within a class",
        },
        "tta": {
            "sizes": list(rcfg.tta_sizes),
            "flip": rcfg.tta_flip if rcfg.tta_sizes else False,
            "max_size": rcfg.tta_max_size or rcfg.test_max_size,
            "nms_iou": rcfg.nms,
            "note": "not in the graph: weaksam predict runs the model at each size (and "
            "mirrored), maps the boxes back, pools them and keeps per-class NMS's best "
            "max_detections; weaksam predict --no-tta gives the exported file's detections",
        },
    }
    if masks:
        info["outputs"]["masks"] = (
            "(N, 1, H, W) float32 probabilities in the input's pixels; inside at > 0.5"
        )
    if fmt == "onnx":
        info["runtime"] = {"onnxruntime": True, "opset": ONNX_OPSET}
    else:
        info["runtime"] = {"torch.jit.load": True, "torch": torch.__version__.split("+")[0]}
    write_json(sidecar_path(out), info)
    return info


def run_exported(path: Path, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detections of an exported file on one image ((3, H, W) RGB in 0..1), as the file gives
    them, with onnxruntime or torch.jit; used by the tests and as the README's example."""
    import json

    info = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    names = output_names(info["kind"] == "mask_rcnn")
    if info["format"] == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        values = session.run(None, {"image": image.numpy().astype("float32")})
        return {n: torch.from_numpy(v) for n, v in zip(names, values, strict=True)}
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return dict(zip(names, module(image), strict=True))
