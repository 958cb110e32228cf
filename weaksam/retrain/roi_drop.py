"""RoI drop in the second-stage box head (METHOD.md section 10.2, the intended semantics).

For every sampled RoI r: CE_r is the softmax cross-entropy over the K+1 classes (no reduction);
for a foreground RoI, REG_r is the box loss summed over the 4 coordinates for its class (L1 when
``beta`` is 0, as detectron2's config; smooth L1 otherwise). When ``active`` (after
``start_iter``), the foreground RoIs with CE_r > ``thresh_cls`` **and** REG_r > ``thresh_reg``
contribute zero loss and so zero gradient. The reduction is unchanged: the classification loss is
the mean over all R RoIs (dropped ones counted as zeros), the box loss the sum over foreground RoIs
divided by R.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class BoxHeadLosses:
    loss_classifier: torch.Tensor
    loss_box_reg: torch.Tensor
    dropped: int  # RoIs whose losses were zeroed
    foreground: int


def box_head_losses(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: torch.Tensor,
    regression_targets: torch.Tensor,
    *,
    active: bool,
    thresh_cls: float,
    thresh_reg: float,
    beta: float = 0.0,
) -> BoxHeadLosses:
    """``class_logits`` (R, K+1), ``box_regression`` (R, 4 (K+1)), ``labels`` (R,) with 0 for
    background, ``regression_targets`` (R, 4) encoded deltas of each RoI's matched box."""
    r = class_logits.shape[0]
    ce = F.cross_entropy(class_logits, labels, reduction="none")  # (R,)
    fg = torch.nonzero(labels > 0, as_tuple=True)[0]
    pred = box_regression.reshape(r, -1, 4)[fg, labels[fg]]  # (F, 4)
    if beta > 0:
        per_coord = F.smooth_l1_loss(pred, regression_targets[fg], beta=beta, reduction="none")
    else:
        per_coord = (pred - regression_targets[fg]).abs()
    reg = per_coord.sum(dim=1)  # (F,)
    keep_fg = torch.ones_like(reg, dtype=torch.bool)
    if active:
        keep_fg = ~((ce[fg] > thresh_cls) & (reg > thresh_reg))
    keep = torch.ones_like(ce, dtype=torch.bool)
    keep[fg] = keep_fg
    zero = ce.new_zeros(())
    loss_cls = torch.where(keep, ce, zero).sum() / max(1, r)
    loss_box = torch.where(keep_fg, reg, zero).sum() / max(1, r)
    return BoxHeadLosses(loss_cls, loss_box, int((~keep_fg).sum()), int(fg.numel()))
