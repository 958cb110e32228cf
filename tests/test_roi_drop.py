"""RoI drop (METHOD.md section 10.2) on hand-made per-RoI losses."""

from __future__ import annotations

import math

import pytest
import torch

from weaksam.retrain.roi_drop import box_head_losses


def case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # 3 RoIs, K = 1 (2 logits each). r0: foreground, well classified, small box error.
    # r1: foreground, logits (10, 0) against label 1 -> CE = log(1 + e^10) ~= 10.0000454 > 4,
    #     box error |5| + |0| + |0| + |0| = 5 > 4 -> dropped when active.
    # r2: background, logits (0, 0) -> CE = log 2.
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 1, 0])
    deltas = torch.zeros(3, 8)
    deltas[0, 4:] = torch.tensor([0.5, 0.0, 0.0, 0.0])
    deltas[1, 4:] = torch.tensor([5.0, 0.0, 0.0, 0.0])
    deltas.requires_grad_(True)
    return logits, deltas, labels, torch.zeros(3, 4)


def test_nothing_dropped_before_start() -> None:
    logits, deltas, labels, targets = case()
    out = box_head_losses(logits, deltas, labels, targets, active=False, thresh_cls=4, thresh_reg=4)
    ce1 = math.log(1 + math.exp(10))
    assert float(out.loss_classifier.detach()) == pytest.approx(
        (math.log(2) + ce1 + math.log(2)) / 3
    )
    assert float(out.loss_box_reg.detach()) == pytest.approx((0.5 + 5.0) / 3)  # sum over fg / R
    assert out.dropped == 0 and out.foreground == 2


def test_drop_zeroes_loss_and_gradient_of_the_noisy_roi() -> None:
    logits, deltas, labels, targets = case()
    out = box_head_losses(logits, deltas, labels, targets, active=True, thresh_cls=4, thresh_reg=4)
    assert out.dropped == 1
    # Normalisation unchanged: still divided by R = 3, r1 counted as zero.
    assert float(out.loss_classifier.detach()) == pytest.approx(2 * math.log(2) / 3)
    assert float(out.loss_box_reg.detach()) == pytest.approx(0.5 / 3)
    (out.loss_classifier + out.loss_box_reg).backward()
    assert logits.grad is not None and deltas.grad is not None
    assert torch.equal(logits.grad[1], torch.zeros(2))
    assert torch.equal(deltas.grad[1], torch.zeros(8))
    assert logits.grad[0].abs().sum() > 0 and deltas.grad[0, 4] == pytest.approx(1 / 3)


def test_both_conditions_are_needed() -> None:
    logits, deltas, labels, targets = case()
    # CE above 4 but box error 5 not above 6: kept.
    out = box_head_losses(logits, deltas, labels, targets, active=True, thresh_cls=4, thresh_reg=6)
    assert out.dropped == 0
    # Box error above 4 but CE ~10 not above 11: kept.
    out = box_head_losses(logits, deltas, labels, targets, active=True, thresh_cls=11, thresh_reg=4)
    assert out.dropped == 0


def test_background_is_never_dropped() -> None:
    logits = torch.tensor([[-10.0, 10.0]])  # background RoI with CE ~20
    out = box_head_losses(
        logits,
        torch.zeros(1, 8),
        torch.tensor([0]),
        torch.zeros(1, 4),
        active=True,
        thresh_cls=4,
        thresh_reg=-1,
    )
    assert out.dropped == 0 and float(out.loss_classifier.detach()) == pytest.approx(20.0, rel=1e-4)
    assert float(out.loss_box_reg.detach()) == 0.0


def test_smooth_l1_variant() -> None:
    logits, deltas, labels, targets = case()
    # beta 1: |0.5| -> 0.5 * 0.5^2 = 0.125; |5| -> 5 - 0.5 = 4.5.
    out = box_head_losses(
        logits, deltas, labels, targets, active=False, thresh_cls=4, thresh_reg=4, beta=1.0
    )
    assert float(out.loss_box_reg.detach()) == pytest.approx((0.125 + 4.5) / 3)
