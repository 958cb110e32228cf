"""Official ``segment_anything`` checkpoints: built by type, loaded with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from weaksam.assets import sam_checkpoint


class CheckpointError(ValueError):
    """A SAM checkpoint is corrupt or does not match its model type."""


def load_official_sam(path: str | Path, model_type: str, *, verify_sha256: bool = True) -> Sam:
    """Build ``model_type`` (vit_h / vit_l / vit_b) and load ``path`` into it, on the CPU.

    The file is checked (existence, size, known sha256 unless ``verify_sha256`` is off), loaded
    with ``map_location="cpu"`` and ``weights_only=True`` (no pickled code runs), and must fill
    every parameter of the model with tensors of the right shapes.
    """
    file = sam_checkpoint(path, model_type, verify_sha256=verify_sha256)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or truncated file, or not a tensor archive
        raise CheckpointError(f"{file}: cannot load as a SAM checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: not a state dict")
    model = sam_model_registry[model_type](checkpoint=None)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        guess = _guess_type(state)
        hint = f"; it looks like a {guess} checkpoint" if guess and guess != model_type else ""
        raise CheckpointError(
            f"{file} does not match SAM {model_type}: {len(missing)} missing and {len(wrong)} "
            f"mis-shaped tensors (e.g. {(missing + wrong)[:3]}){hint}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _guess_type(state: dict[str, torch.Tensor]) -> str | None:
    """ViT type from the patch-embedding width (1280 h, 1024 l, 768 b)."""
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    return {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}.get(int(weight.shape[0]))
