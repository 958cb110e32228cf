"""The paper's transformer retrainers (METHOD.md 10.3 and 11): a DINO-style DETR trained on the
pseudo ground truth and Mask2Former trained on the SAM pseudo masks, both from ``transformers``
(pure PyTorch) on weaksam's backbones.

``load_model(path)`` gives a trained one back::

    from weaksam.detr import load_model

    kind, model, cfg, classes = load_model("results/demo/dino/mist/model.pt")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from weaksam.config import DinoConfig, Mask2FormerConfig
from weaksam.dependencies import RuleKeys

if TYPE_CHECKING:
    import torch


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, ...]:
    """``(kind, model, config section, classes)`` of a ``dino/…/model.pt`` or
    ``mask2former/…/model.pt``, in eval mode on ``device``."""
    import torch

    from weaksam.detr.stage import load_model as _load

    return _load(path, torch.device(device))


# read at test time from the config (the detection rules), recorded in model.pt by training
_TEST = ("test_size", "test_max_size", "score_thresh", "max_per_image")
DINO_INFERENCE_KEYS = tuple(
    f"retrain.dino.{k}" for k in (*_TEST, "tta_sizes", "tta_flip", "tta_max_size", "nms")
)
MASK2FORMER_INFERENCE_KEYS = tuple(f"wsis.mask2former.{k}" for k in _TEST)
_COMMON = ("assets.resnet50", "compute.seed", "compute.precision")


def _training_keys(prefix: str, section: type, test_keys: tuple[str, ...]) -> tuple[str, ...]:
    """Every key of a section but its test-time keys and its checkpoint interval."""
    from dataclasses import fields

    skip = {*test_keys, f"{prefix}.checkpoint_every"}
    return tuple(f"{prefix}.{f.name}" for f in fields(section) if f"{prefix}.{f.name}" not in skip)


_METRICS = RuleKeys(("evaluation.iou", "evaluation.plus_one"))

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "dino_train": RuleKeys(
        (*_training_keys("retrain.dino", DinoConfig, DINO_INFERENCE_KEYS), *_COMMON),
        unhashed=DINO_INFERENCE_KEYS,
    ),
    "dino_detect": RuleKeys(DINO_INFERENCE_KEYS),
    "dino_metrics": _METRICS,
    "mask2former_train": RuleKeys(
        (
            *_training_keys("wsis.mask2former", Mask2FormerConfig, MASK2FORMER_INFERENCE_KEYS),
            *_COMMON,
        ),
        unhashed=MASK2FORMER_INFERENCE_KEYS,
    ),
    "mask2former_detect": RuleKeys(MASK2FORMER_INFERENCE_KEYS),
    "mask2former_metrics": _METRICS,
    "predict_dino": RuleKeys(("predict.score_threshold", *DINO_INFERENCE_KEYS)),
    "predict_mask2former": RuleKeys(("predict.score_threshold", *MASK2FORMER_INFERENCE_KEYS)),
}
