"""Per-image WSOD losses (METHOD.md sections 7.1 and 7.2), vectorised over proposals and classes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from weaksam.config import MistConfig, OicrConfig
from weaksam.wsod.boxes import encode
from weaksam.wsod.model import Head, WsodOutput
from weaksam.wsod.pseudo_labels import PseudoLabels, mist_pseudo_labels, oicr_pseudo_labels


@dataclass
class LossParts:
    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def wsddn_loss(phi: torch.Tensor, labels: torch.Tensor, *, background: bool) -> torch.Tensor:
    """MIL loss on the image score y = sum_r phi_r.

    - ``background=False`` (WSDDN / OICR): K columns, y clamped to [0, 1], BCE summed over classes.
    - ``background=True`` (MIST): K+1 columns with the label of column 0 fixed to 0, y clamped to
      [1e-8, 1 - 1e-8], BCE averaged over the K+1 entries.
    """
    y = phi.sum(dim=0)
    target = labels.to(phi.dtype)
    if background:
        target = torch.cat((target.new_zeros(1), target))
        return F.binary_cross_entropy(y.clamp(1e-8, 1 - 1e-8), target, reduction="mean")
    return F.binary_cross_entropy(y.clamp(0.0, 1.0), target, reduction="sum")


def oicr_refine_loss(logits: torch.Tensor, pl: PseudoLabels) -> torch.Tensor:
    """mean_r w_r * -log(p_r[label_r] + 1e-6), p = softmax over the K+1 classes."""
    p = F.softmax(logits, dim=1).gather(1, pl.labels[:, None])[:, 0]
    return (pl.weights * -torch.log(p + 1e-6)).mean()


def mist_refine_loss(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    rois: torch.Tensor,
    pl: PseudoLabels,
    weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification, regression) for one MIST refinement, each times its weight lambda_k.

    Classification: mean_r w_r CE(logits_r, label_r). Regression: (1 / R) sum over foreground r of
    w_r SmoothL1_{beta=1}(deltas_r[label_r], encode(pseudo box, roi_r)), summed over 4 coordinates.
    """
    r = logits.shape[0]
    cls = (pl.weights * F.cross_entropy(logits, pl.labels, reduction="none")).mean()
    fg = pl.labels > 0
    if not bool(fg.any()):
        return weight * cls, deltas.sum() * 0.0
    pred = deltas.view(r, -1, 4)[fg, pl.labels[fg]]  # (F, 4)
    target = encode(pl.targets[fg], rois[fg])
    l1 = F.smooth_l1_loss(pred, target, beta=1.0, reduction="none").sum(dim=1)
    reg = (pl.weights[fg] * l1).sum() / r
    return weight * cls, weight * reg


def image_loss(
    out: WsodOutput,
    rois: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: Head,
    mist: MistConfig,
    oicr: OicrConfig,
    refine_weight: float = 1.0,
) -> LossParts:
    """The whole loss of one image. Pseudo-labels come from detached scores of the previous
    stage: WSDDN's phi for refinement 1, softmax of refinement k-1 (background dropped) after.
    ``refine_weight`` multiplies every refinement's losses (``wsod.refine_ramp_iterations``);
    the parts are logged before it."""
    outf = WsodOutput(
        cls=out.cls.float(),
        det=out.det.float(),
        refine=[r.float() for r in out.refine],
        bbox=[b.float() for b in out.bbox],
    )
    rois = rois.float()
    phi = outf.wsddn_scores()
    mil = wsddn_loss(phi, labels, background=head == "mist")
    total = mil
    parts = {"mil": float(mil.detach())}
    source = phi.detach()[:, 1:] if head == "mist" else phi.detach()
    for k, logits in enumerate(outf.refine):
        if head == "mist":
            pl = mist_pseudo_labels(
                rois,
                source,
                labels,
                top_fraction=mist.top_fraction,
                seed_iou=mist.seed_iou,
                fg_iou=mist.fg_iou,
            )
            cls, reg = mist_refine_loss(logits, outf.bbox[k], rois, pl, mist.loss_weights[k])
            total = total + refine_weight * (cls + reg)
            parts[f"ref{k + 1}"] = float(cls.detach())
            parts[f"reg{k + 1}"] = float(reg.detach())
        else:
            pl = oicr_pseudo_labels(
                rois,
                source,
                labels,
                candidate_ratio=oicr.candidate_ratio,
                nms_iou=oicr.nms_iou,
                fg_iou=oicr.fg_iou,
            )
            loss = oicr_refine_loss(logits, pl)
            total = total + refine_weight * loss
            parts[f"ref{k + 1}"] = float(loss.detach())
        source = F.softmax(logits.detach(), dim=1)[:, 1:]
    return LossParts(total, parts)
