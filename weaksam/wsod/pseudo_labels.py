"""Online pseudo-labels for the refinement branches: OICR (METHOD.md 7.2) and MIST (7.1.1).

Both rules take one image's proposals ``boxes`` (R, 4), the source scores ``scores`` (R, K) over
the K foreground classes (never a background column) and the image's label vector ``labels``
(K,) bool, and return, per proposal, a class label in 0..K (0 = background, c + 1 = class c), a
loss weight and the pseudo ground-truth box it was assigned to (for MIST's box regression).

Everything is vectorised over proposals and classes. Ties are broken by proposal index (a stable
sort), so a rule gives the same answer on every run and device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou, nms


@dataclass(frozen=True)
class PseudoLabels:
    labels: torch.Tensor  # (R,) int64 in 0..K, 0 = background
    weights: torch.Tensor  # (R,) float, the assigned pseudo box's score
    targets: torch.Tensor  # (R, 4) the assigned pseudo box (XYXY)
    gt_boxes: torch.Tensor  # (G, 4) the pseudo ground truth
    gt_classes: torch.Tensor  # (G,) int64, 0-based foreground class
    gt_scores: torch.Tensor  # (G,)


def _empty(boxes: torch.Tensor) -> PseudoLabels:
    r = boxes.shape[0]
    return PseudoLabels(
        labels=torch.zeros(r, dtype=torch.long, device=boxes.device),
        weights=boxes.new_zeros(r),
        targets=boxes.new_zeros(r, 4),
        gt_boxes=boxes.new_zeros(0, 4),
        gt_classes=torch.zeros(0, dtype=torch.long, device=boxes.device),
        gt_scores=boxes.new_zeros(0),
    )


def assign(
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_scores: torch.Tensor,
    fg_iou: float,
) -> PseudoLabels:
    """Each proposal goes to the pseudo box of highest IoU (the first one on a tie); it is
    foreground (class + 1) when that IoU >= ``fg_iou``, else background. Its weight is that pseudo
    box's score in both cases."""
    if boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return _empty(boxes)
    iou = box_iou(boxes, gt_boxes)  # (R, G)
    best_iou, best = _first_max(iou)
    labels = torch.where(best_iou >= fg_iou, gt_classes[best] + 1, torch.zeros_like(best))
    return PseudoLabels(
        labels=labels,
        weights=gt_scores[best],
        targets=gt_boxes[best],
        gt_boxes=gt_boxes,
        gt_classes=gt_classes,
        gt_scores=gt_scores,
    )


def _first_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row maxima of (R, G) and the first column that reaches each."""
    best = x.max(dim=1).values
    cols = torch.arange(x.shape[1], device=x.device).expand_as(x)
    first = torch.where(x == best[:, None], cols, x.shape[1]).min(dim=1).values
    return best, first


def _stable_desc(scores: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.sort(scores, dim=dim, descending=True, stable=True).indices


def mist_pseudo_labels(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    top_fraction: float = 0.15,
    seed_iou: float = 0.2,
    fg_iou: float = 0.5,
) -> PseudoLabels:
    """MIST: for every positive class, rank proposals by score and take the top k = floor(p R)
    (k = 1 when R < 10); candidate i is a seed when its IoU with every higher-ranked candidate
    is < ``seed_iou`` (rank 0 always is). Seeds become pseudo boxes scored by their class score."""
    r = boxes.shape[0]
    positive = torch.nonzero(labels.bool(), as_tuple=True)[0]
    if r == 0 or positive.numel() == 0:
        return _empty(boxes)
    k = max(1, int(top_fraction * r)) if r >= 10 else 1
    order = _stable_desc(scores[:, positive])[:k]  # (k, P): proposal index by rank, per class
    cand = boxes[order]  # (k, P, 4)
    cand_scores = scores[order, positive[None, :]]  # (k, P)
    ious = box_iou_batched(cand.transpose(0, 1))  # (P, k, k)
    higher = torch.ones(k, k, dtype=torch.bool, device=boxes.device).tril(-1)  # j < i
    max_iou_higher = torch.where(higher, ious, torch.zeros_like(ious)).amax(dim=2)  # (P, k)
    seed = (max_iou_higher < seed_iou).T  # (k, P); rank 0 has no higher candidate: always True
    # Pseudo boxes in class order, and by rank within a class.
    seed_ct = seed.T  # (P, k)
    gt_boxes = cand.transpose(0, 1)[seed_ct]
    gt_classes = positive[:, None].expand(-1, k)[seed_ct]
    gt_scores = cand_scores.T[seed_ct]
    return assign(boxes, gt_boxes, gt_classes, gt_scores, fg_iou)


def box_iou_batched(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU within each of B sets: (B, n, 4) -> (B, n, n)."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by greedy NMS (suppress IoU > ``iou``), highest score first, ties by index.

    torchvision's NMS kernel is this greedy rule in one call (no per-candidate sync with the
    device), but its sort does not define the order of equal scores; it is given the ranks of a
    stable sort as scores, so ties keep the lower index, as the loop reference
    (tests/reference_wsod.py) does."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = _stable_desc(scores)
    ranks = torch.arange(order.shape[0], 0, -1, dtype=torch.float32, device=boxes.device)
    return order[nms(boxes[order].float(), ranks, iou)]


def oicr_pseudo_labels(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    candidate_ratio: float = 0.9,
    nms_iou: float = 0.5,
    fg_iou: float = 0.5,
) -> PseudoLabels:
    """OICR as in METHOD.md 7.2: for every positive class, all proposals scoring >= ``ratio`` x
    the class maximum are candidates; class-agnostic NMS (IoU ``nms_iou``) over all candidates
    ranked by score leaves the pseudo boxes."""
    r = boxes.shape[0]
    positive = torch.nonzero(labels.bool(), as_tuple=True)[0]
    if r == 0 or positive.numel() == 0:
        return _empty(boxes)
    s = scores[:, positive]  # (R, P)
    is_cand = s >= candidate_ratio * s.amax(dim=0, keepdim=True)
    # Candidates in class order, proposals ascending within a class.
    col, row = torch.nonzero(is_cand.T, as_tuple=True)
    cand_boxes, cand_scores, cand_classes = boxes[row], s[row, col], positive[col]
    keep = greedy_nms(cand_boxes, cand_scores, nms_iou)
    return assign(boxes, cand_boxes[keep], cand_classes[keep], cand_scores[keep], fg_iou)
