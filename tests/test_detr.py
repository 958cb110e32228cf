"""The transformer retrainers (weaksam.detr): the borrowed backbones still do their pretrained
job, the losses and post-processing by hand, a few steps that lower the loss on 4 tiny images,
frozen parts that stay frozen, empty PGT images, class-count mismatches, resume."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from tests.conftest import build_tiny_shapes
from weaksam.config import AssetsConfig, DinoConfig, Mask2FormerConfig
from weaksam.detr.backbone import build_levels
from weaksam.detr.dino import DinoCriterion, dino_config, pool_passes, postprocess
from weaksam.detr.mask2former import postprocess as m2f_postprocess
from weaksam.detr.train import (
    ClassCountError,
    Example,
    boxes_of_masks,
    dino_labels,
    load_checkpoint,
    pad_batch,
    train_transformer,
)
from weaksam.models.backbones import efficientnet_lite0
from weaksam.retrain.train import read_targets

CLASSES = ["circle", "triangle", "square", "star", "cross"]


def tiny_dino(**kw: object) -> DinoConfig:
    base = DinoConfig(
        backbone="efficientnet_lite0",
        iterations=4,
        batch_size=2,
        images_per_forward=2,
        lr=2e-4,
        lr_steps=(),
        train_sizes=(64,),
        max_size=96,
        hidden_dim=64,
        ffn_dim=128,
        decoder_layers=2,
        num_queries=20,
        num_denoising=10,
        test_size=64,
        test_max_size=96,
        checkpoint_every=2,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def tiny_m2f(**kw: object) -> Mask2FormerConfig:
    base = Mask2FormerConfig(
        backbone="efficientnet_lite0",
        iterations=4,
        batch_size=2,
        images_per_forward=2,
        lr=2e-4,
        lr_steps=(),
        crop_size=64,
        scale_range=(0.8, 1.25),
        hidden_dim=64,
        ffn_dim=128,
        encoder_layers=1,
        decoder_layers=3,
        num_queries=10,
        train_num_points=256,
        test_size=64,
        test_max_size=96,
        checkpoint_every=2,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detr")
    build_tiny_shapes(root, num_trainval=4)
    return root


def _items(tiny: Path, *, masks: bool) -> list:
    instances = json.loads((tiny / "out" / "gt" / "trainval.json").read_text())
    return read_targets(instances, masks=masks)


# --- the borrowed backbones still do their pretrained job --------------------------------


def test_efficientnet_levels_keep_the_imagenet_classifier() -> None:
    """The stride-32 level of the multi-scale EfficientNet-Lite0, through the network's own
    head, gives the unmodified network's ImageNet logits exactly: splitting it into stages
    changed nothing (the detectors' features are the pretrained ones)."""
    torch.manual_seed(0)
    whole = efficientnet_lite0(None, pretrained=True, output_stride=32).body.net.eval()
    levels = build_levels("efficientnet_lite0", None, pretrained=True, strides=(4, 8, 16, 32))
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        top = levels(x).feature_maps[-1]
        head = whole._swish(whole._bn1(whole._conv_head(top)))
        mine = whole._fc(whole._avg_pooling(head).flatten(1))
        theirs = whole((x * 255 - 127) / 128)
    assert torch.allclose(mine, theirs, atol=1e-4)
    assert [f.shape[-1] for f in levels(x).feature_maps] == [32, 16, 8, 4]


def test_resnet50_levels_are_torchvision_layers_in_eval_mode() -> None:
    """C3..C5 of the ResNet-50 levels equal torchvision's ResNet-50 (eval mode) layer outputs
    on ImageNet-normalised input, also after ``train()`` (every BatchNorm is frozen)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    for m in net.modules():  # non-trivial statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = Path(torch.hub.get_dir()) / "unused"
    del path
    levels = build_levels("resnet50", None, pretrained=False, strides=(8, 16, 32))
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    own = {}
    mapping = {
        "conv1": "0.0",
        "bn1": "0.1",
        "layer1": "0.4",
        "layer2": "1",
        "layer3": "2",
        "layer4": "3",
    }
    for k, v in state.items():
        head, rest = k.split(".", 1)
        if k.endswith("num_batches_tracked"):
            continue
        own[f"stages.{mapping[head]}.{rest}"] = v
    levels.load_state_dict(own)
    levels.train()
    x = torch.rand(1, 3, 128, 96)
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        y = (x - mean) / std
        y = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(y)))))
        c3 = net.layer2(y)
        c5 = net.layer4(net.layer3(c3))
        maps = levels(x).feature_maps
    assert torch.allclose(maps[0], c3, atol=1e-4) and torch.allclose(maps[2], c5, atol=1e-3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in levels.modules())
    assert not any(p.requires_grad for p in levels.stages[0].parameters())  # stem + layer1


# --- numeric rules by hand ---------------------------------------------------------------


def test_focal_loss_by_hand() -> None:
    """One query, two classes, matched to class 0: logits (0, ln 3).
    class 0, target 1, p = 0.5: 0.25 * (1 - 0.5)^2 * ln 2 = 0.043321
    class 1, target 0, p = 0.75: 0.75 * 0.75^2 * -ln(1 - 0.75) = 0.584843
    sum / 1 box = 0.628165."""
    criterion = DinoCriterion(dino_config(tiny_dino(), 2, [24, 40, 112]))
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    targets = [{"class_labels": torch.tensor([0]), "boxes": torch.zeros(1, 4)}]
    out = criterion.loss_labels_focal({"logits": logits}, targets, indices, 1.0)
    expected = 0.25 * 0.25 * math.log(2) + 0.75 * 0.75**2 * -math.log(0.25)
    assert out["loss_focal"].item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.628165, abs=1e-6)


def test_dino_postprocess_by_hand() -> None:
    """Two queries, two classes; top 3 (query, class) pairs by sigmoid score. Query 1 class 0
    (logit 2) > query 0 class 1 (logit 1) > query 1 class 1 (logit 0). Query 1's box (cx 0.5,
    cy 0.25, w 0.5, h 0.5) on a 100 x 200 (H x W) canvas: x 50..150, y 0..50."""
    logits = torch.tensor([[-3.0, 1.0], [2.0, 0.0]])
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.5, 0.25, 0.5, 0.5]])
    out = postprocess(logits, boxes, (100, 200), top_k=3)
    assert out["labels"].tolist() == [1, 2, 2]  # 1-based
    assert out["scores"].tolist() == pytest.approx(
        [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1)), 0.5]
    )
    assert out["boxes"][0].tolist() == pytest.approx([50.0, 0.0, 150.0, 50.0])
    assert out["boxes"][1].tolist() == pytest.approx([30.0, 15.0, 50.0, 25.0])


def test_tta_pooling_keeps_the_best_of_overlapping_passes() -> None:
    a = {
        "boxes": torch.tensor([[0.0, 0, 10, 10]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
    }
    b = {
        "boxes": torch.tensor([[1.0, 0, 10, 10], [50, 50, 60, 60]]),
        "scores": torch.tensor([0.8, 0.3]),
        "labels": torch.tensor([1, 1]),
    }
    out = pool_passes([a, b], nms=0.6, max_per_image=5)  # IoU 0.9 > 0.6: the 0.8 box goes
    assert out["scores"].tolist() == pytest.approx([0.9, 0.3])


def test_mask2former_postprocess_by_hand() -> None:
    """One query, two classes + no-object; class logits (ln 6, 0, ln 3) -> softmax (0.6, 0.1,
    0.3). Mask logits +4 inside rows 1..2 x cols 2..4 of a 4 x 6 map, -4 elsewhere: mask
    score sigmoid(4) = 0.98201; scores 0.6 * 0.98201 and 0.1 * 0.98201; box x 2..5, y 1..3."""
    cls = torch.tensor([[math.log(6.0), 0.0, math.log(3.0)]])
    mask = torch.full((1, 4, 6), -4.0)
    mask[0, 1:3, 2:5] = 4.0
    out = m2f_postprocess(cls, mask, (4, 6), top_k=2)
    s = 1 / (1 + math.exp(-4))
    assert out["labels"].tolist() == [1, 2]
    assert out["scores"].tolist() == pytest.approx([0.6 * s, 0.1 * s], rel=1e-4)
    assert out["boxes"][0].tolist() == [2.0, 1.0, 5.0, 3.0]
    assert out["masks"].shape == (2, 1, 4, 6)


def test_boxes_of_masks_and_padding_and_normalised_targets() -> None:
    masks = torch.zeros(1, 5, 7, dtype=torch.bool)
    masks[0, 1:4, 2:6] = True
    assert boxes_of_masks(masks).tolist() == [[2.0, 1.0, 6.0, 4.0]]
    batch, canvas = pad_batch([torch.ones(3, 40, 70), torch.ones(3, 65, 20)])
    assert canvas == (96, 96) and batch.shape == (2, 3, 96, 96)
    assert batch[0, :, 40:].abs().sum() == 0 and batch[1, :, :, 20:].abs().sum() == 0
    # box 8..24 x 16..48 on a 64 x 32 (H x W) canvas: cx 16/32, cy 32/64, w 16/32, h 32/64
    ex = Example(torch.zeros(3, 60, 30), torch.tensor([[8.0, 16, 24, 48]]), torch.tensor([2]))
    target = dino_labels([ex], (64, 32), torch.device("cpu"))[0]
    assert target["boxes"].tolist() == [[0.5, 0.5, 0.5, 0.5]] and target[
        "class_labels"
    ].tolist() == [2]


# --- they learn, frozen parts stay frozen, bad input -------------------------------------


def _frozen_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, FrozenBatchNorm2d):
            for b in ("running_mean", "running_var", "weight", "bias"):
                out[f"{name}.{b}"] = getattr(m, b).clone()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            out[name] = p.detach().clone()
    return out


@pytest.mark.parametrize("kind", ["dino", "mask2former"])
def test_loss_falls_on_four_images_and_frozen_parts_stay(
    kind: str, tiny: Path, tmp_path: Path
) -> None:
    """30 steps on the 4 tiny images (ground-truth boxes / masks): the mean loss of the last
    5 steps is below that of the first 5; backbone BatchNorm statistics and the frozen stem
    are unchanged; the model writes detections in the image's frame."""
    torch.set_num_threads(2)
    masks = kind == "mask2former"
    cfg = (tiny_dino if kind == "dino" else tiny_m2f)(
        iterations=30, checkpoint_every=100, batch_size=4, images_per_forward=4
    )
    out = tmp_path / "model.pt"
    torch.manual_seed(0)
    from weaksam.detr.train import build_model

    before = _frozen_state(build_model(kind, cfg, 5, AssetsConfig(), pretrained=True))  # type: ignore[arg-type]
    model = train_transformer(
        kind,  # type: ignore[arg-type]
        _items(tiny, masks=masks),
        CLASSES,
        cfg,
        AssetsConfig(),
        out=out,
        work=tmp_path / "work.pt",
        log_path=tmp_path / "log.tsv",
        seed=0,
    )
    rows = [line.split("\t") for line in (tmp_path / "log.tsv").read_text().splitlines()[1:]]
    losses = [float(r[1]) for r in rows]
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    after = _frozen_state(model)
    assert before.keys() == after.keys() and len(before) > 0
    assert all(torch.equal(before[k], after[k]) for k in before)
    from weaksam.detr.stage import detect_image, load_model

    k, loaded, saved_cfg, classes = load_model(out, torch.device("cpu"))
    assert k == kind and classes == CLASSES
    from weaksam.cam.imaging import to_tensor
    from weaksam.data.images import load_rgb

    image = to_tensor(load_rgb(Path(_items(tiny, masks=False)[0].path)))[:, :50] / 255.0
    dets = detect_image(k, loaded, image, saved_cfg)
    # DINO keeps its top max_per_image pairs; Mask2Former drops queries whose mask is empty
    # (after 30 steps there may be none)
    top = min(saved_cfg.max_per_image, saved_cfg.num_queries * len(CLASSES))
    assert len(dets["scores"]) == (top if kind == "dino" else len(dets["masks"]))
    assert (dets["boxes"][:, 2] <= 64.01).all() and (dets["boxes"][:, 3] <= 50.01).all()
    assert ((dets["labels"] >= 1) & (dets["labels"] <= 5)).all()
    if masks:
        assert dets["masks"].shape[1:] == (1, 50, 64)


@pytest.mark.parametrize("kind", ["dino", "mask2former"])
def test_empty_pgt_images_train_as_negatives(kind: str, tiny: Path, tmp_path: Path) -> None:
    """Images whose pseudo ground truth is empty stay in the batch (as for the R-CNNs): a
    batch made only of them gives a finite loss and a step."""
    items = [
        replace(
            i,
            boxes=i.boxes[:0],
            labels=i.labels[:0],
            segmentations=[] if kind == "mask2former" else None,
        )
        for i in _items(tiny, masks=kind == "mask2former")
    ]
    cfg = (tiny_dino if kind == "dino" else tiny_m2f)(iterations=2)
    train_transformer(
        kind,
        items,
        CLASSES,
        cfg,
        AssetsConfig(),
        out=tmp_path / "m.pt",
        work=tmp_path / "w.pt",
        log_path=tmp_path / "l.tsv",
        seed=0,
        pretrained=False,
    )  # type: ignore[arg-type]
    rows = (tmp_path / "l.tsv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(math.isfinite(float(r.split("\t")[1])) for r in rows)
    assert [int(r.split("\t")[3]) for r in rows] == [0, 0]  # objects per step


def test_resume_and_class_count_mismatch(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped after 2 steps resumes from its checkpoint to the end; a checkpoint of
    another class count is refused, naming both, on resume and at detection."""
    items = _items(tiny, masks=False)
    cfg = tiny_dino(iterations=4)
    common = {
        "out": tmp_path / "m.pt",
        "work": tmp_path / "w.pt",
        "log_path": tmp_path / "l.tsv",
        "seed": 0,
        "pretrained": False,
    }
    train_transformer("dino", items, CLASSES, cfg, AssetsConfig(), stop_after=2, **common)  # type: ignore[arg-type]
    assert (
        load_checkpoint(tmp_path / "w.pt", "dino")["step"] == 2 and not (tmp_path / "m.pt").exists()
    )
    with pytest.raises(ClassCountError, match="5 classes"):
        train_transformer("dino", items, CLASSES[:3], cfg, AssetsConfig(), **common)  # type: ignore[arg-type]
    train_transformer("dino", items, CLASSES, cfg, AssetsConfig(), **common)  # type: ignore[arg-type]
    rows = (tmp_path / "l.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == [1, 2, 3, 4]
    from types import SimpleNamespace

    import weaksam.detr.stage as stage
    from weaksam.config import load_config

    cfg_all = load_config(
        {"dataset": {"name": "t", "format": "shapes"}, "compute": {"device": "cpu"}}
    )
    other = SimpleNamespace(classes=("circle", "square"))
    monkeypatch.setattr(stage, "read_manifest", lambda _path: other)
    with pytest.raises(ClassCountError, match=r"5 classes .* this run has 2"):
        stage.detect_stage(
            cfg_all,
            "dino",
            "m",
            str(tmp_path / "m.pt"),
            "test",
            str(tmp_path / "d.json"),
            threads=1,
        )


@pytest.mark.parametrize("kind", ["dino", "mask2former"])
def test_weaksam_predict_takes_the_transformer_models(
    kind: str, tiny: Path, tmp_path: Path
) -> None:
    """``weaksam predict`` (and ``require_detector``) take a DINO or Mask2Former model.pt: the
    output names the model's classes, each image once, boxes inside the image, and RLE masks
    for Mask2Former; the model's test settings can be overridden."""
    from weaksam.predict import predict, require_detector

    masks = kind == "mask2former"
    cfg = (tiny_dino if kind == "dino" else tiny_m2f)(iterations=2)
    out = tmp_path / "model.pt"
    train_transformer(
        kind,  # type: ignore[arg-type]
        _items(tiny, masks=masks),
        CLASSES,
        cfg,
        AssetsConfig(),
        out=out,
        work=tmp_path / "w.pt",
        log_path=tmp_path / "l.tsv",
        seed=0,
        pretrained=False,
    )
    require_detector(out)
    images = [Path(i.path) for i in _items(tiny, masks=False)[:2]]
    result = predict(
        out, images, device="cpu", score_threshold=0.0, test_size=80, show_progress=False
    )
    assert [c["name"] for c in result.categories] == CLASSES
    assert [i["id"] for i in result.images] == [1, 2] and not result.skipped
    for a in result.annotations:
        x, y, w, h = a["bbox"]
        assert a["image_id"] in (1, 2) and 1 <= a["category_id"] <= 5
        assert x >= 0 and y >= 0 and x + w <= 64.01 and y + h <= 64.01
        assert ("segmentation" in a) == masks
    if kind == "dino":
        assert len(result.annotations) == 2 * min(cfg.max_per_image, cfg.num_queries * 5)


def test_predict_refuses_other_files_naming_what_they_are(tmp_path: Path) -> None:
    from weaksam.predict import require_detector
    from weaksam.training import ModelKindError, save_state

    path = tmp_path / "wsod.pt"
    save_state(path, {"format_version": 1, "kind": "wsod", "model": {}})
    with pytest.raises(ModelKindError, match="WSOD head"):
        require_detector(path)
