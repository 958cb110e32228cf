"""CAM classifier training: schedule, augmentation, determinism and resume after a kill."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import weaksam.cam.train as train_mod
from tests.conftest import build_tiny_shapes
from weaksam.cam.train import augment, lr_factor, multi_hot, train_classifier
from weaksam.config import AssetsConfig, CamConfig
from weaksam.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]


def test_lr_factor_hand_worked() -> None:
    cfg = replace(CamConfig(), iterations=12, warmup_iterations=2)
    # warm-up: (step + 1) / 2; then cosine over 10 steps: 0.5 * (1 + cos(pi * k / 10))
    assert [lr_factor(s, cfg) for s in (0, 1, 2, 7)] == pytest.approx([0.5, 1.0, 1.0, 0.5])
    assert lr_factor(11, cfg) == pytest.approx(
        0.5 * (1 + torch.cos(torch.tensor(torch.pi * 9 / 10)).item())
    )


def test_multi_hot() -> None:
    assert multi_hot([[0, 2], []], 3).tolist() == [[1, 0, 1], [0, 0, 0]]


def test_augment_shape_and_seed() -> None:
    img = torch.rand(3, 50, 80) * 255
    a = augment(img, 64, (0.7, 1.3), torch.Generator().manual_seed(1))
    b = augment(img, 64, (0.7, 1.3), torch.Generator().manual_seed(1))
    assert a.shape == (3, 64, 64) and torch.equal(a, b)


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    build_tiny_shapes(root, num_trainval=6)
    return root / "out" / "manifest.parquet"


def _cfg() -> CamConfig:
    return replace(
        CamConfig(),
        train_size=64,
        batch_size=2,
        iterations=4,
        warmup_iterations=1,
        checkpoint_every=2,
    )


def test_killed_training_resumes_to_the_same_weights(
    tiny_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = read_manifest(tiny_manifest)
    torch.set_num_threads(1)
    full = train_classifier(
        manifest,
        "trainval",
        _cfg(),
        AssetsConfig(),
        out=tmp_path / "a.pt",
        work=tmp_path / "a.work",
        seed=3,
        log_path=tmp_path / "a.tsv",
    )

    real_save = train_mod.save_checkpoint
    calls = {"n": 0}

    def killed_after_first(*args: object, **kwargs: object) -> None:
        real_save(*args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += 1
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(train_mod, "save_checkpoint", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            manifest,
            "trainval",
            _cfg(),
            AssetsConfig(),
            out=tmp_path / "b.pt",
            work=tmp_path / "b.work",
            seed=3,
            log_path=tmp_path / "b.tsv",
        )
    assert calls["n"] == 1 and torch.load(tmp_path / "b.work", weights_only=True)["step"] == 2
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = train_classifier(
        manifest,
        "trainval",
        _cfg(),
        AssetsConfig(),
        out=tmp_path / "b.pt",
        work=tmp_path / "b.work",
        seed=3,
        log_path=tmp_path / "b.tsv",
    )
    for (name, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert (
        (tmp_path / "a.tsv").read_text().count("\n")
        == (tmp_path / "b.tsv").read_text().count("\n")
        == 5
    )


def test_rotate_hand_worked() -> None:
    from weaksam.cam.train import rotate

    img = torch.zeros(1, 1, 5, 5)
    img[0, 0, 0, 2] = 1.0  # top centre
    # 90 degrees counter-clockwise moves the top centre to the left centre (row 2, column 0)
    out = rotate(img, 90.0)
    assert out[0, 0].argmax().item() == 2 * 5 + 0
    assert torch.allclose(rotate(img, 0.0), img, atol=1e-6)
    # 180 degrees: the bottom centre
    assert rotate(img, 180.0)[0, 0].argmax().item() == 4 * 5 + 2


TORCHRUN_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from dataclasses import replace
from pathlib import Path
from tests.test_train_classifier import _cfg
from weaksam.cam.train import train_classifier
from weaksam.config import AssetsConfig
from weaksam.data.manifest import read_manifest
torch.set_num_threads(1)
train_classifier(read_manifest({manifest!r}), "trainval", replace(_cfg(), batch_size=3, dropout=0.0),
                 AssetsConfig(), out=Path({out!r}), work=Path({out!r} + ".work"), seed=3,
                 log_path=Path({out!r} + ".tsv"))
"""


def test_torchrun_two_gloo_processes_match_one(tiny_manifest: Path, tmp_path: Path) -> None:
    """Under torchrun each process takes its share of a batch (3 images: 2 and 1) and the
    gradients are summed: the weights are one process's (no dropout, BatchNorm frozen)."""
    torch.set_num_threads(1)
    out = tmp_path / "ddp.pt"
    script = tmp_path / "ddp.py"
    script.write_text(
        TORCHRUN_SCRIPT.format(repo=str(REPO), manifest=str(tiny_manifest), out=str(out))
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*cmd, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = train_classifier(
        read_manifest(tiny_manifest),
        "trainval",
        replace(_cfg(), batch_size=3, dropout=0.0),
        AssetsConfig(),
        out=tmp_path / "single.pt",
        work=tmp_path / "single.work",
        seed=3,
        log_path=tmp_path / "single.tsv",
    )
    ddp = torch.load(out, weights_only=True)["model"]
    # AdamW normalises each update to about lr (1e-3), so the summation order of gloo against
    # one process moves most weights by ~1e-6, but flips the sign of the first update of a
    # weight whose gradient is ~0 (how many depends on the CPU's kernels: up to 0.1 % of a
    # tensor, by ~1e-4, on an AVX-512 machine); a wrong share or gradient sum moves most weights
    for name, p in single.state_dict().items():
        if not p.is_floating_point():
            assert torch.equal(p, ddp[name]), name
            continue
        off = ((p - ddp[name]).abs() > 1e-5 + 1e-4 * ddp[name].abs()).float().mean().item()
        assert off <= 0.005, f"{name}: {off:.2%} of the weights differ"
        torch.testing.assert_close(p, ddp[name], rtol=1e-4, atol=1e-3, msg=name)
    losses = [line.split("\t")[1] for line in (tmp_path / "single.tsv").read_text().splitlines()]
    ddp_losses = [line.split("\t")[1] for line in Path(f"{out}.tsv").read_text().splitlines()]
    assert losses[0] == ddp_losses[0] == "loss" and len(losses) == 5
    # the losses as logged (6 decimals), the later ones after those few flipped updates
    assert [float(a) for a in losses[1:]] == pytest.approx(
        [float(b) for b in ddp_losses[1:]], rel=1e-4
    )


def test_cam_neck_trains_on_a_frozen_backbone() -> None:
    """``cam.neck_channels``: a trainable 3x3 convolution + ReLU between the frozen backbone and
    the CAM layer. The logits stay the spatial mean of the CAMs, the optimizer updates the neck
    and the CAM layer at the head's rate, and the frozen backbone (weights and BatchNorm
    statistics) is unchanged by a training step."""
    cfg = replace(CamConfig(), backbone_lr_mult=0.0, neck_channels=16, dropout=0.0)
    model = train_mod.build_classifier(cfg, AssetsConfig(), 3, pretrained=False)
    assert isinstance(model.neck, torch.nn.Sequential)
    assert model.neck[0].out_channels == 16 and model.head.in_channels == 16
    images = torch.rand(2, 3, 64, 64) * 255
    logits = model(images)
    assert torch.allclose(logits, model.cams(images).mean(dim=(2, 3)))
    opt = train_mod._optimizer(model, cfg)
    head_group = opt.param_groups[1]
    assert head_group["lr"] == cfg.lr
    assert {id(p) for p in head_group["params"]} == {
        id(p) for p in [*model.neck.parameters(), *model.head.parameters()]
    }
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    neck_before = model.neck[0].weight.clone()
    model.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(images), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    )
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(neck_before, model.neck[0].weight)
    # without a neck the CAM layer reads the backbone's features, as METHOD.md has it
    plain = train_mod.build_classifier(
        replace(cfg, neck_channels=0), AssetsConfig(), 3, pretrained=False
    )
    assert isinstance(plain.neck, torch.nn.Identity)
    assert plain.head.in_channels == plain.backbone.channels


def test_classifier_is_channels_last_with_the_default_layouts_outputs() -> None:
    """build_classifier stores the convolution weights channels-last (bench/
    bench_channels_last.py: a faster CPU step); the CAMs and their gradient are those of the
    same weights in the default layout, and a state dict saved from one loads into the other."""
    cfg = replace(CamConfig(), backbone_lr_mult=0.0, neck_channels=16, dropout=0.0)
    model = train_mod.build_classifier(cfg, AssetsConfig(), 3, pretrained=False)
    assert model.neck[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.neck[0].weight.is_contiguous()
    images = torch.rand(2, 3, 64, 64) * 255
    reference = train_mod.build_classifier(cfg, AssetsConfig(), 3, pretrained=False)
    reference.to(memory_format=torch.contiguous_format)
    reference.load_state_dict(model.state_dict())
    assert reference.neck[0].weight.is_contiguous()
    model.eval(), reference.eval()
    cams, ref_cams = model.cams(images), reference.cams(images)
    assert cams.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(cams, ref_cams, atol=1e-5)
    cams.sum().backward()
    ref_cams.sum().backward()
    assert torch.allclose(model.head.weight.grad, reference.head.weight.grad, rtol=1e-4, atol=1e-5)
