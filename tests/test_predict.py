"""``weaksam predict`` and ``weaksam.retrain.load_detector``: the trained models on new images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import build_tiny_shapes
from tests.test_retrain import _train, small_cfg
from weaksam.cli import main
from weaksam.data.images import load_rgb
from weaksam.predict import ModelKindError, collect_images, predict, require_detector
from weaksam.retrain import load_detector
from weaksam.retrain.infer import coco_results, detect


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A detector and a Mask R-CNN trained for 2 steps on 4 tiny shapes images, and the images."""
    root = tmp_path_factory.mktemp("predict")
    build_tiny_shapes(root, num_trainval=4)
    det, seg = root / "det.pt", root / "seg.pt"
    _train(root, det, small_cfg(iterations=12, lr=0.02, lr_steps=(10,), checkpoint_every=12))
    _train(root, seg, small_cfg(iterations=2), masks=True)
    return det, seg, root / "src" / "JPEGImages"


def _images(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def test_predict_matches_the_workflow_detect_and_stands_alone(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    det, _, folder = trained
    images = _images(folder)[:3]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in images[1:]))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = predict(det, [images[0], listing, broken], score_threshold=0.0, show_progress=False)
    assert [i["file_name"] for i in result.images] == [str(p) for p in images]
    assert [c["name"] for c in result.categories] == [
        "circle",
        "triangle",
        "square",
        "star",
        "cross",
    ]
    assert result.skipped and result.skipped[0]["path"] == str(broken)
    # the same detections as the workflow's detect stage on the same image
    model, rcfg, _, _ = __import__("weaksam.retrain.stage", fromlist=["x"]).load_detector(
        det, torch.device("cpu")
    )
    from dataclasses import replace

    rcfg = replace(rcfg, score_thresh=0.0)
    image = torch.from_numpy(load_rgb(images[0])).permute(2, 0, 1).float() / 255.0
    want = coco_results(detect(model, image, rcfg), 1)
    got = [a for a in result.annotations if a["image_id"] == 1]
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g["category_id"] == w["category_id"]
        assert g["bbox"] == pytest.approx(w["bbox"], abs=1e-3)
        assert g["score"] == pytest.approx(w["score"], abs=1e-5)


def test_cli_writes_json_masks_and_drawings(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, seg, folder = trained
    out, drawn = tmp_path / "dets.json", tmp_path / "drawn"
    args = ["predict", str(folder), "--model", str(seg), "-o", str(out), "--draw", str(drawn)]
    assert main([*args, "--score-threshold", "0.0", "--device", "cpu"]) == 0
    data = json.loads(out.read_text())
    assert len(data["images"]) == len(_images(folder)) and data["annotations"]
    assert all("segmentation" in a for a in data["annotations"])  # Mask R-CNN: RLE masks
    assert len(list(drawn.glob("*.png"))) == len(_images(folder))


def test_detections_come_back_in_the_displayed_orientation(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """An image stored sideways with EXIF orientation 6 gives the detections of its upright
    copy: predict reads images as the workflow does."""
    det, _, folder = trained
    upright = np.asarray(Image.open(_images(folder)[0]).convert("RGB"))
    Image.fromarray(upright).save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed = stored rotated 90 degrees clockwise
    Image.fromarray(np.rot90(upright, 1).copy()).save(tmp_path / "sideways.png", exif=exif)
    a = predict(det, [tmp_path / "upright.png"], score_threshold=0.0, show_progress=False)
    b = predict(det, [tmp_path / "sideways.png"], score_threshold=0.0, show_progress=False)
    assert (b.images[0]["width"], b.images[0]["height"]) == (
        a.images[0]["width"],
        a.images[0]["height"],
    )
    assert np.allclose([x["bbox"] for x in b.annotations], [x["bbox"] for x in a.annotations])


def test_batched_prediction_keeps_the_images_apart(
    trained: tuple[Path, Path, Path],
) -> None:
    """Images of one size batched together give the single-image detections (same padding)."""
    det, _, folder = trained
    images = _images(folder)[:4]
    one = predict(det, images, score_threshold=0.0, show_progress=False, batch_size=1)
    four = predict(det, images, score_threshold=0.0, show_progress=False, batch_size=4)
    assert one.annotations and len(four.annotations) == len(one.annotations)
    # the same detections per image up to rounding: batched convolutions round differently,
    # which reorders the many near-equal low scores of this barely trained model, so each
    # image's top scores and its best detection are compared
    for image_id in range(1, len(images) + 1):
        a = [x for x in one.annotations if x["image_id"] == image_id]
        b = [x for x in four.annotations if x["image_id"] == image_id]
        top_a = sorted((x["score"] for x in a), reverse=True)[:5]
        top_b = sorted((x["score"] for x in b), reverse=True)[:5]
        assert np.allclose(top_a, top_b, atol=1e-4)
        # the batched run's best detections are the single run's: same class and box at a
        # score within rounding (two near-equal best scores may come in either order)
        for best in sorted(b, key=lambda x: -x["score"])[:3]:
            assert any(
                x["category_id"] == best["category_id"]
                and abs(x["score"] - best["score"]) < 1e-4
                and np.allclose(x["bbox"], best["bbox"], atol=1e-2)
                for x in a
            ), best


def test_load_detector_gives_a_plain_torchvision_model(trained: tuple[Path, Path, Path]) -> None:
    det, _, folder = trained
    model = load_detector(det)
    assert not model.training and model.weaksam_classes[0] == "circle"
    image = torch.from_numpy(load_rgb(_images(folder)[0])).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        out = model([image])[0]
    assert set(out) == {"boxes", "scores", "labels"}


def test_models_of_another_kind_are_named(tmp_path: Path) -> None:
    wsod = tmp_path / "wsod.pt"
    torch.save({"kind": "wsod", "format_version": 1, "model": {}}, wsod)
    with pytest.raises(ModelKindError, match=r"is a WSOD head .* needs a proposal store"):
        require_detector(wsod)
    cam = tmp_path / "classifier.pt"
    torch.save({"kind": "cam_classifier", "model": {}}, cam)
    with pytest.raises(ModelKindError, match="is the CAM classifier"):
        require_detector(cam)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelKindError, match="not a weaksam checkpoint"):
        require_detector(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"kind": "detector", "hook": collect_images}, pickled)  # a pickled function
    with pytest.raises(ModelKindError, match="weights_only=True"):
        require_detector(pickled)
    assert (
        main(["predict", str(tmp_path), "--model", str(wsod), "-o", str(tmp_path / "x.json")]) == 2
    )


def test_weak_classes_by_hand() -> None:
    from weaksam.retrain.model_card import weak_classes

    # mean of 0.8, 0.6, 0.1 = 0.5; weak below 0.5 x 0.5 = 0.25: only c; NaN classes are left out
    per_class = {
        "a": {"ap11": 0.8},
        "b": {"ap11": 0.6},
        "c": {"ap11": 0.1},
        "d": {"ap11": float("nan")},
    }
    assert weak_classes(per_class) == ["c"]


def test_model_card_names_data_schedule_metrics_and_weak_classes(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from weaksam.retrain.model_card import model_card

    det, _, folder = trained
    out = folder.parents[1] / "out"
    names = ["circle", "triangle", "square", "star", "cross"]
    metrics = {
        "num_images": 2,
        "voc": {
            "map11": 0.4,
            "map_area": 0.41,
            "per_class": {
                n: {"ap11": v, "npos": 1}
                for n, v in zip(names, [0.9, 0.5, 0.1, 0.5, 0.0], strict=True)
            },
        },
    }
    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics))
    quality = tmp_path / "quality.json"
    quality.write_text(
        json.dumps({"ground_truth": True, "pgt": {"iou": 0.5, "precision": 0.61, "recall": 0.72}})
    )
    card = model_card(
        model_path=str(det),
        manifest_path=str(out / "manifest.parquet"),
        instances_path=str(out / "gt" / "trainval.json"),
        pgt_quality_path=str(quality),
        metrics_path=str(metrics_path),
        digest="abc123",
        repo=Path(__file__).resolve().parents[1],
    )
    assert "# Faster R-CNN" in card and "4 trainval images" in card
    assert "precision 0.610, recall 0.720" in card and "config digest `abc123`" in card
    assert "12 steps of 2 images" in card
    # mean AP50 0.4: weak below 0.2 -> square (0.1) and cross (0.0)
    assert "weak classes (test AP50 under 50% of the mean): square, cross" in card
    assert "| circle | 0.900 |" in card


def _same_detections(exported: dict[str, torch.Tensor], want: list[dict], masks: bool) -> int:
    """``exported`` and ``want`` (predict's) hold the same detections, each matched to one of
    the other: the same class, the box within 0.5 px, the score within 1e-3 and, for masks, mask
    IoU >= 0.95. Returns how many were compared."""
    from weaksam.data.masks import segmentation_to_mask

    assert len(exported["boxes"]) == len(want)
    unused = list(range(len(want)))
    for k in range(len(want)):
        box = exported["boxes"][k].tolist()
        label, score = int(exported["labels"][k]), float(exported["scores"][k])
        match = next(
            j
            for j in unused
            if want[j]["category_id"] == label
            and abs(want[j]["score"] - score) <= 1e-3
            and np.allclose(
                [box[0], box[1], box[2] - box[0], box[3] - box[1]], want[j]["bbox"], atol=0.5
            )
        )
        unused.remove(match)
        if masks:
            h, w = exported["masks"].shape[-2:]
            ours = exported["masks"][k, 0].numpy() > 0.5
            theirs = segmentation_to_mask(want[match]["segmentation"], h, w).astype(bool)
            union = (ours | theirs).sum()
            assert union == 0 or (ours & theirs).sum() / union >= 0.95
    return len(want)


def _with_live_features(model: Path, folder: Path) -> Path:
    """The model with the ImageNet EfficientNet-Lite0 in its backbone and a seeded random box
    head. The test models start from a random backbone and train a few steps, so every box gets
    the same features and the same score; ties would decide which boxes NMS and the detections
    cap keep. Here the scores differ from box to box, so comparing detections means something."""
    from weaksam.models.backbones import efficientnet_lite0

    state = torch.load(model, map_location="cpu", weights_only=True)
    weights = state["model"]
    weights.update(
        {
            f"backbone.body.{k}": v
            for k, v in efficientnet_lite0().state_dict().items()
            if f"backbone.body.{k}" in weights
        }
    )
    generator = torch.Generator().manual_seed(0)
    heads = ("backbone.reduce", "roi_heads.box_head", "roi_heads.box_predictor.cls_score")
    for key in weights:
        if key.startswith(heads) and key.endswith("weight"):
            fan_in = weights[key][0].numel()
            weights[key] = torch.randn(weights[key].shape, generator=generator) / fan_in**0.5
    out = folder / f"live_{model.name}"
    torch.save(state, out)
    return out


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_models_give_predicts_detections(
    trained: tuple[Path, Path, Path], tmp_path: Path, fmt: str
) -> None:
    """``weaksam export`` of both kinds, run with onnxruntime / torch.jit alone, gives what
    ``weaksam predict`` gives, on images of other sizes and shapes than the trace's."""
    from weaksam.export import run_exported, sidecar_path

    det, seg, folder = trained
    original = load_rgb(_images(folder)[0])
    odd = tmp_path / "odd.png"  # odd sides, wide: not the trace's size nor a multiple of 32
    Image.fromarray(np.ascontiguousarray(original[:51, :])).resize((97, 51)).save(odd)
    tall = tmp_path / "tall.png"
    Image.fromarray(original).resize((70, 133)).save(tall)
    wide = tmp_path / "wide.png"  # 417 x 650 at shorter side 64: torchvision sizes it 63 x 99
    Image.fromarray(original).resize((650, 417)).save(wide)
    images = [_images(folder)[1], odd, tall, wide]
    for model, masks in (
        (_with_live_features(det, tmp_path), False),
        (_with_live_features(seg, tmp_path), True),
    ):
        out = tmp_path / f"{model.stem}.{'onnx' if fmt == 'onnx' else 'ts'}"
        args = ["export", "--model", str(model), "--format", fmt, "-o", str(out)]
        assert main([*args, "--score-threshold", "0.3"]) == 0
        info = json.loads(sidecar_path(out).read_text())
        assert info["classes"][0] == "circle" and info["kind"] == (
            "mask_rcnn" if masks else "faster_rcnn"
        )
        assert info["in_graph"]["score_threshold"] == 0.3
        want = predict(model, images, score_threshold=0.3, tta=False, show_progress=False)
        compared = 0
        for image_id, path in enumerate(images, start=1):
            x = torch.from_numpy(load_rgb(path)).permute(2, 0, 1).float() / 255.0
            got = run_exported(out, x)
            dets = [a for a in want.annotations if a["image_id"] == image_id]
            compared += _same_detections(got, dets, masks)
        assert compared >= 10, model  # the comparison is not vacuous, for either model
        # no detection passes a threshold of 1: empty outputs of the right shapes
        none = out.with_name(f"none_{out.name}")
        assert main([*args[:-1], str(none), "--score-threshold", "1.0"]) == 0
        empty = run_exported(none, torch.rand(3, 40, 70))
        assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,)
        if masks:
            assert empty["masks"].shape == (0, 1, 40, 70)


def test_r50_fpn_exports_too(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The paper's backbone (R50-FPN, untrained here) exports as well: the ONNX file gives
    predict's detections on a wide image whose resize rounds differently in float32."""
    from weaksam.export import export_model, run_exported

    _, _, folder = trained
    root = folder.parents[1]
    model = tmp_path / "r50.pt"
    _train(root, model, small_cfg(backbone="r50_fpn", iterations=1, checkpoint_every=1))
    wide = tmp_path / "wide.png"
    Image.fromarray(load_rgb(_images(folder)[0])).resize((650, 417)).save(wide)
    export_model(model, "onnx", tmp_path / "r50.onnx", score_threshold=0.5)
    want = predict(model, [wide], score_threshold=0.5, tta=False, show_progress=False)
    x = torch.from_numpy(load_rgb(wide)).permute(2, 0, 1).float() / 255.0
    assert _same_detections(run_exported(tmp_path / "r50.onnx", x), want.annotations, False) > 0


def test_export_resize_gives_the_eager_sizes() -> None:
    """Traced, the export transform sizes images as eager torchvision does, also where float32
    would round the other way (417 x 650 -> 63 x 99 at shorter side 64, by hand:
    417 * fl64(64 / 417) = 63.99999999999999, floored 63; in float32 it rounds to 64)."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from weaksam.export import _EagerSizedTransform

    eager = GeneralizedRCNNTransform(64, 128, [0.0] * 3, [1.0] * 3).eval()
    export = GeneralizedRCNNTransform(64, 128, [0.0] * 3, [1.0] * 3).eval()
    export.__class__ = _EagerSizedTransform
    traced = torch.jit.trace(lambda x: export.resize(x)[0], (torch.rand(3, 320, 400),))
    for h, w in [(417, 650), (495, 450), (51, 97), (999, 1001), (577, 433)]:
        x = torch.rand(3, h, w)
        want = eager.resize(x)[0]
        got = traced(x)
        assert got.shape == want.shape, (h, w)
        assert torch.allclose(got, want, atol=1e-6)
    assert eager.resize(torch.rand(3, 417, 650))[0].shape == (3, 63, 99)


def test_fixed_padding_equals_the_dynamic_one_on_multiples_of_32() -> None:
    """EfficientNet-Lite0 with its "same" paddings fixed gives the dynamic network's features on
    inputs whose sides are multiples of 32 (the detectors pad every batch so)."""
    from weaksam.models.backbones import efficientnet_lite0, fix_same_padding

    net = efficientnet_lite0(pretrained=False).eval()
    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        before = net(x)
        # 1 stem + 16 blocks' depthwise, expand and project convs (no expand in block 0) + head
        assert fix_same_padding(net) == 1 + 16 * 3 - 1 + 1
        after = net(x)
    assert before.shape == after.shape == (1, 1280, 6, 10)
    assert torch.allclose(before, after, atol=1e-5)


def test_export_refuses_other_kinds_and_formats(tmp_path: Path) -> None:
    from weaksam.export import export_model

    wsod = tmp_path / "wsod.pt"
    torch.save({"kind": "wsod", "format_version": 1, "model": {}}, wsod)
    with pytest.raises(ModelKindError, match="is a WSOD head"):
        export_model(wsod, "onnx", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(wsod, "tflite", tmp_path / "x.tflite")  # type: ignore[arg-type]
