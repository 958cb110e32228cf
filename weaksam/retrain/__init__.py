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

from weaksam.dependencies import RuleKeys

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


# read at test time from the config (the detection rules), recorded in model.pt by training as
# the defaults of `weaksam predict` and `weaksam export`
INFERENCE_KEYS = (
    "test_size",
    "test_max_size",
    "tta_sizes",
    "tta_flip",
    "tta_max_size",
    "score_thresh",
    "nms",
    "max_per_image",
)
_TRAIN_KEYS = (
    "retrain.backbone",
    "retrain.iterations",
    "retrain.batch_size",
    "retrain.images_per_forward",
    "retrain.lr",
    "retrain.backbone_lr_mult",
    "retrain.momentum",
    "retrain.weight_decay",
    "retrain.warmup_iterations",
    "retrain.warmup_factor",
    "retrain.lr_steps",
    "retrain.gamma",
    "retrain.train_sizes",
    "retrain.max_size",
    "retrain.flip",
    "retrain.box_loss_beta",
    "retrain.roi_drop",
    "retrain.sizes.rpn_post_nms_train",
    "retrain.sizes.rpn_post_nms_test",
    "retrain.sizes.rois_per_image",
    "retrain.sizes.box_head_dim",
    "assets.resnet50",
    "compute.seed",
    "compute.precision",
)
_RECORDED = tuple(f"retrain.{k}" for k in INFERENCE_KEYS)
_TRAIN = RuleKeys(_TRAIN_KEYS, unhashed=_RECORDED)
# Mask R-CNN's own values where set (weaksam.config.mask_rcnn_config): its inference ones are
# recorded in the model file like retrain's
_MASK_RECORDED = (
    *_RECORDED,
    "wsis.mask_rcnn.test_size",
    "wsis.mask_rcnn.test_max_size",
    "wsis.mask_rcnn.tta_sizes",
)
MASK_TRAIN = RuleKeys(
    (
        *_TRAIN_KEYS,
        "retrain.sizes.mask_head_channels",
        "retrain.sizes.mask_head_layers",
        "wsis.roi_drop",
        "wsis.mask_rcnn.iterations",
        "wsis.mask_rcnn.warmup_iterations",
        "wsis.mask_rcnn.lr_steps",
        "wsis.mask_rcnn.train_sizes",
        "wsis.mask_rcnn.max_size",
    ),
    unhashed=_MASK_RECORDED,
)
_DETECT = RuleKeys(_RECORDED)
MASK_DETECT = RuleKeys(_MASK_RECORDED)
_METRICS = RuleKeys(("evaluation.iou", "evaluation.plus_one"))

# The config keys each rule of this stage reads (weaksam.dependencies): its rerun triggers.
CONFIG_KEYS = {
    "retrain_train": _TRAIN,
    "retrain_train_no_roi_drop": _TRAIN,
    "oracle_detector_train": _TRAIN,
    "retrain_detect": _DETECT,
    # the detector's and Mask R-CNN's bounds (which of them is the {model} wildcard)
    "oracle_retrain_detect": MASK_DETECT,
    "retrain_metrics": _METRICS,
    "oracle_retrain_metrics": _METRICS,
    "model_card": RuleKeys(()),
    "predict": RuleKeys(("predict.score_threshold", *_RECORDED)),
}
