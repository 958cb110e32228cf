"""Retraining torchvision detectors on pseudo ground truth (METHOD.md sections 10-11).

``load_detector(path)`` gives a trained model back as a plain torchvision model::

    from weaksam.retrain import load_detector

    model = load_detector("results/demo/detector/mist/model.pt")  # eval mode, on the CPU
    out = model([image])[0]  # image: (3, H, W) float RGB in 0..1; boxes XYXY in pixels
    names = [model.weaksam_classes[c - 1] for c in out["labels"]]  # labels start at 1
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torchvision.models.detection import FasterRCNN


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> FasterRCNN:
    """A retrained Faster R-CNN (or Mask R-CNN) from ``detector/…/model.pt`` /
    ``maskrcnn/…/model.pt``, as the torchvision model it is, in eval mode on ``device``, with its
    own test-time settings (shorter side ``test_size``, score threshold, NMS, detections per
    image; without TTA) and its class names in ``model.weaksam_classes`` (label k is
    ``weaksam_classes[k - 1]``). Loaded with ``weights_only``; a file of another kind is refused
    with what it is."""
    import torch

    from weaksam.retrain.infer import configure_inference
    from weaksam.retrain.stage import load_detector as _load

    model, rcfg, classes, _ = _load(path, torch.device(device))
    configure_inference(model, rcfg)
    model.transform.min_size = (rcfg.test_size,)
    model.weaksam_classes = list(classes)
    return model
