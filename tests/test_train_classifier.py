"""CAM classifier training: schedule, augmentation, determinism and resume after a kill."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import weaksam.cam.train as train_mod
from tests.conftest import build_tiny_shapes
from weaksam.cam.train import augment, lr_factor, multi_hot, train_classifier
from weaksam.config import AssetsConfig, CamConfig
from weaksam.data.manifest import read_manifest


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
