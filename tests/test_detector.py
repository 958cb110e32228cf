"""The retraining detectors: RoI drop wired into torchvision's heads."""

from __future__ import annotations

import torch

from weaksam.config import DetectorSizesConfig
from weaksam.retrain.detector import DropRoIHeads, RoiDropParams, build_detector


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 96)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[5.0, 5.0, 40.0, 70.0], [50.0, 10.0, 90.0, 40.0]]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    return images, targets


def _model(drop: RoiDropParams, masks: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector(
        "efficientnet_lite0", 2, masks=masks, drop=drop, pretrained=False, min_size=96, max_size=128
    )


def test_drop_is_off_before_start_and_on_after() -> None:
    drop = RoiDropParams(enabled=True, start_iter=5, thresh_cls=-1.0, thresh_reg=-1.0)
    model = _model(drop).train()
    heads = model.roi_heads
    assert isinstance(heads, DropRoIHeads)
    images, targets = _batch()
    heads.iteration = 4
    before = model(images, targets)
    assert heads.last_dropped == 0 and heads.last_foreground > 0
    heads.iteration = 5  # thresholds -1: every foreground RoI is dropped
    torch.manual_seed(1)
    after = model(images, targets)
    assert heads.last_dropped == heads.last_foreground > 0
    assert float(after["loss_box_reg"].detach()) == 0.0
    assert set(before) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}


def test_dropped_rois_give_no_gradient_to_the_box_regressor() -> None:
    drop = RoiDropParams(enabled=True, start_iter=0, thresh_cls=-1.0, thresh_reg=-1.0)
    model = _model(drop).train()
    images, targets = _batch()
    losses = model(images, targets)
    losses["loss_box_reg"].backward()
    grad = model.roi_heads.box_predictor.bbox_pred.weight.grad
    assert grad is None or torch.count_nonzero(grad) == 0


def test_switched_off_matches_plain_losses_shape_and_eval_runs() -> None:
    model = _model(RoiDropParams(enabled=False, thresh_cls=-1.0, thresh_reg=-1.0)).train()
    images, targets = _batch()
    losses = model(images, targets)
    assert model.roi_heads.last_dropped == 0 and float(losses["loss_box_reg"].detach()) > 0
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def test_mask_rcnn_variant_has_mask_loss() -> None:
    model = _model(RoiDropParams(), masks=True).train()
    images, targets = _batch()
    for t, img in zip(targets, images, strict=True):
        masks = torch.zeros(len(t["boxes"]), *img.shape[1:], dtype=torch.uint8)
        for k, b in enumerate(t["boxes"].long()):
            masks[k, b[1] : b[3], b[0] : b[2]] = 1
        t["masks"] = masks
    assert "loss_mask" in model(images, targets)


def test_head_sizes_reach_the_torchvision_modules() -> None:
    sizes = DetectorSizesConfig(
        rpn_post_nms_train=300,
        rpn_post_nms_test=200,
        rois_per_image=64,
        box_head_dim=32,
        mask_head_channels=16,
        mask_head_layers=2,
    )
    model = build_detector(
        "efficientnet_lite0", 3, masks=True, drop=RoiDropParams(), pretrained=False, sizes=sizes
    )
    assert model.rpn._post_nms_top_n == {"training": 300, "testing": 200}
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    assert model.roi_heads.box_predictor.cls_score.in_features == 32
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background
    convs = [m for m in model.roi_heads.mask_head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16]
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 4


def test_default_sizes_keep_torchvision_r50_fpn_layout() -> None:
    """The explicit heads equal torchvision's defaults, so R50-FPN state dicts keep their keys
    and shapes."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    ours = build_detector("r50_fpn", 5, masks=True, drop=RoiDropParams(), pretrained=False)
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=6)

    def shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
        # torchvision's unpretrained reference has plain BatchNorm (num_batches_tracked); ours
        # is frozen BatchNorm, as with pretrained weights
        return {k: v.shape for k, v in model.state_dict().items() if "num_batches" not in k}

    assert shapes(ours) == shapes(ref)
