"""Pretrained parts that weaksam modifies still do their pretrained job (DESIGN.md section 9).

Shapes and strides are checked elsewhere; here each modified network is run on real photos
(``../shared/data``, skipped when absent) and compared with the unmodified network.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import build_tiny_shapes
from weaksam.cam.train import build_classifier, train_classifier
from weaksam.cam.train import load_checkpoint as load_cam_checkpoint
from weaksam.config import AssetsConfig, CamConfig
from weaksam.data.manifest import read_manifest
from weaksam.models.backbones import Backbone, efficientnet_lite0
from weaksam.retrain.stage import load_detector
from weaksam.retrain.train import read_targets, train_detector
from weaksam.wsod.data import ProposalSource
from weaksam.wsod.stage import load_model as load_wsod_model
from weaksam.wsod.train import train_wsod


def _photos(shared: Path, size: int = 224) -> torch.Tensor:
    """(N, 3, size, size) float RGB in 0..255: raccoon and icevision photos, BCCD micrographs."""
    files = sorted((shared / "raccoon" / "images").glob("*.jpg"))[:40]
    files += sorted((shared / "icevision-samples" / "images").glob("*.jpg"))
    files += sorted((shared / "bccd" / "JPEGImages").glob("*.jpg"))[:20]
    arrays = [
        np.array(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        for f in files
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def _imagenet_probs(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """(N, 1000) ImageNet class probabilities of EfficientNet-Lite0's own classifier on the
    backbone's features."""
    net = backbone.body.net  # type: ignore[union-attr]
    with torch.no_grad():
        feats = backbone(images)  # (N, 1280, h, w)
        pooled = net._avg_pooling(feats).flatten(1)  # (N, 1280)
        probs: torch.Tensor = net._fc(pooled).softmax(1)  # (N, 1000)
    return probs


def test_stride16_efficientnet_still_classifies_photos_like_the_original(
    shared_data: Path,
) -> None:
    images = _photos(shared_data)
    assert len(images) >= 50
    ref = _imagenet_probs(efficientnet_lite0(output_stride=32).eval(), images)
    s16 = _imagenet_probs(efficientnet_lite0(output_stride=16).eval(), images)
    agreement = (s16.argmax(1) == ref.argmax(1)).float().mean().item()
    # Measured: 0.92 with the blocks after the stride change dilated, 0.58 without.
    assert agreement >= 0.8, f"top-1 agreement with the stride-32 network {agreement:.2f}"
    confidence = s16.max(1).values.mean() / ref.max(1).values.mean()
    assert confidence >= 0.7, f"mean top-class probability ratio {confidence:.2f}"


def test_stride16_efficientnet_dilates_every_block_after_the_stride_change() -> None:
    net = efficientnet_lite0(pretrained=False, output_stride=16).body.net  # type: ignore[union-attr]
    blocks = list(net._blocks)
    strides = [tuple(b._depthwise_conv.stride) for b in blocks]
    dilations = [tuple(b._depthwise_conv.dilation) for b in blocks]
    # Lite0's stride-2 depthwise convolutions are in blocks 1, 3, 5 and 11; 11 becomes stride 1.
    assert [i for i, s in enumerate(strides) if s == (2, 2)] == [1, 3, 5]
    assert dilations == [(1, 1)] * 12 + [(2, 2)] * 4


# --- frozen BatchNorm stays frozen through a training step of every trainer --------------------


def _norm_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The normalisation layers' statistics and affine values of an EfficientNet-Lite0 body,
    keyed from ``net.`` on (the same keys in every model that holds one)."""
    out = {}
    for key, value in module.state_dict().items():
        tail = key[key.index("net.") :] if "net." in key else key
        if re.search(r"_bn\d\.(weight|bias|running_mean|running_var)$", tail):
            out[tail] = value.detach().cpu().clone()
    return out


def _assert_frozen(trained: torch.nn.Module) -> None:
    """Every norm layer of ``trained`` equals the pretrained network's and no BatchNorm is left
    that a ``train()`` call would switch to batch statistics."""
    reference = _norm_state(efficientnet_lite0(output_stride=16))
    state = _norm_state(trained)
    assert len(state) == len(reference) > 100
    changed = [k for k, v in reference.items() if not torch.equal(state[k], v)]
    assert not changed, f"{len(changed)} norm tensors changed, e.g. {changed[:3]}"
    trained.train()
    live = [n for n, m in trained.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not live, f"BatchNorm layers that train() switches to batch statistics: {live[:3]}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frozen_bn")
    build_tiny_shapes(root, num_trainval=2)
    return root


def test_cam_classifier_keeps_frozen_batchnorm_through_training(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = replace(
        CamConfig(), train_size=64, batch_size=2, iterations=2, warmup_iterations=1, lr=0.1
    )
    assert cfg.freeze_bn
    model = train_classifier(
        read_manifest(tiny / "out" / "manifest.parquet"),
        "trainval",
        cfg,
        AssetsConfig(),
        out=tmp_path / "c.pt",
        work=tmp_path / "c.work",
        seed=0,
        log_path=tmp_path / "c.tsv",
    )
    _assert_frozen(model.backbone)
    reloaded = build_classifier(cfg, AssetsConfig(), 5, pretrained=False)
    reloaded.load_state_dict(load_cam_checkpoint(tmp_path / "c.pt")["model"])
    _assert_frozen(reloaded.backbone)


def test_wsod_trainer_keeps_frozen_batchnorm_through_training(tiny: Path, tmp_path: Path) -> None:
    from tests.test_wsod_train import small_cfg, write_store

    torch.set_num_threads(1)
    manifest = read_manifest(tiny / "out" / "manifest.parquet")
    write_store(tmp_path / "p.h5", tiny / "out" / "manifest.parquet", "trainval")
    model = train_wsod(
        manifest.split("trainval"),
        list(manifest.classes),
        ProposalSource(tmp_path / "p.h5", digest="d", min_side=0, max_proposals=None),
        small_cfg(iterations=2, lr=0.1),
        "mist",
        AssetsConfig(),
        out=tmp_path / "w.pt",
        work=tmp_path / "w.work.pt",
        log_path=tmp_path / "w.tsv",
        seed=0,
    )
    _assert_frozen(model.backbone)
    reloaded, _, _ = load_wsod_model(tmp_path / "w.pt", torch.device("cpu"))
    _assert_frozen(reloaded.backbone)


@pytest.mark.parametrize("masks", [False, True])
def test_detector_trainer_keeps_frozen_batchnorm_through_training(
    tiny: Path, tmp_path: Path, masks: bool
) -> None:
    from tests.test_retrain import small_cfg

    torch.set_num_threads(1)
    instances = json.loads((tiny / "out" / "gt" / "trainval.json").read_text())
    model = train_detector(
        read_targets(instances, masks=masks),
        ["circle", "triangle", "square", "star", "cross"],
        small_cfg(iterations=2, lr=0.05),
        AssetsConfig(),
        masks=masks,
        out=tmp_path / "d.pt",
        work=tmp_path / "d.work.pt",
        log_path=tmp_path / "d.tsv",
        seed=0,
    )
    _assert_frozen(model.backbone)
    _assert_frozen(load_detector(tmp_path / "d.pt", torch.device("cpu"))[0].backbone)


def test_efficientnet_backbone_is_deterministic_in_training_mode() -> None:
    """No stochastic depth: a training-mode forward equals the eval forward (BatchNorm frozen)."""
    from weaksam.models.backbones import freeze_batchnorm

    backbone = efficientnet_lite0(pretrained=False, output_stride=16)
    freeze_batchnorm(backbone)
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        expected = backbone.eval()(x)
        torch.manual_seed(0)
        assert torch.equal(backbone.train()(x), expected)
