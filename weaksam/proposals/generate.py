"""WeakSAM proposals of one image (METHOD.md sections 4-5).

- Peak points, each a single positive point: decode with multimask output and keep multimask
  outputs 1 and 2 (``keep_multimask``), two boxes per point.
- Class-aware prompts: all peaks of a class together as one multi-point prompt (classes with
  as many points batched together, never padded), multimask outputs 1 and 2 kept.
- The grid through the automatic-mask-generator path: every multimask output, kept when the
  predicted IoU > ``pred_iou_thresh`` and the stability score (offset ``stability_score_offset``)
  >= ``stability_score_thresh``; then box NMS at ``box_nms_thresh`` over the image (on SAM's
  inclusive mask boxes, as the automatic mask generator).

Sources are merged in the order grid, peak, class-aware peak. Scores are SAM's predicted IoU.
Empty masks give no box (counted in the image's ``empty_masks`` attribute).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torchvision.ops import batched_nms

from weaksam.config import ProposalsConfig
from weaksam.proposals.store import SOURCES, ImageProposals
from weaksam.sam.predictor import Segmenter


class Candidates(NamedTuple):
    """Boxes (K, 4), scores (K,) and which of them to keep (K,) bool, all on the segmenter's
    device, with the count of empty masks as a 0-d tensor. Kept apart until ``kept`` so that
    a GPU is not waited on inside the batch loops: boolean indexing and ``int`` of a count
    wait for every queued kernel, and then the GPU idles while the host queues the next batch
    (on an H200, 12 ms of host time per batch of 256 prompts against 16 ms of decoding; the
    prompts' own copies to the GPU do not wait either, ``PromptableSegmenter.decode``)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    keep: torch.Tensor
    empty: torch.Tensor

    def kept(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.boxes[self.keep], self.scores[self.keep], int(self.empty)


def _candidates(parts: list[Candidates], device: torch.device) -> Candidates:
    if not parts:
        z = torch.zeros(0, device=device)
        return Candidates(z.view(0, 4), z, z.bool(), torch.zeros((), device=device).long())
    return Candidates(
        torch.cat([c.boxes for c in parts]),
        torch.cat([c.scores for c in parts]),
        torch.cat([c.keep for c in parts]),
        sum((c.empty for c in parts), torch.zeros((), device=device).long()),
    )


def _boxes_of(seg: Segmenter, low_res: torch.Tensor, iou: torch.Tensor) -> Candidates:
    """(K, 256, 256) logits and (K,) IoU -> boxes and scores, the non-empty masks kept (an empty
    mask's box is zeros; a non-empty one has x2 >= 1)."""
    boxes = seg.mask_boxes(low_res)
    nonempty = boxes[:, 2] > 0
    return Candidates(boxes, iou, nonempty, (~nonempty).sum())


def point_proposals(
    seg: Segmenter, points: torch.Tensor, keep: tuple[int, ...], batch: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Single-point prompts (P, 2) -> boxes of multimask outputs ``keep`` (decoder tokens 1 + k)."""
    tokens = [1 + k for k in keep]
    parts = []
    for start in range(0, points.shape[0], batch):
        p = points[start : start + batch, None, :]  # (b, 1, 2)
        dec = seg.decode(p, torch.ones(p.shape[:2], dtype=torch.long))
        parts.append(
            _boxes_of(seg, dec.low_res[:, tokens].flatten(0, 1), dec.iou[:, tokens].flatten())
        )
    return _candidates(parts, seg.device).kept()


def class_aware_proposals(
    seg: Segmenter, groups: list[torch.Tensor], keep: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One multi-point prompt per class (each (N_c, 2)). Classes with the same number of points
    are decoded together; no class is padded beyond the single label -1 point that SAM's prompt
    encoder appends to every point-only prompt (extra padding points change the masks)."""
    tokens = [1 + k for k in keep]
    parts = []
    for n in sorted({int(g.shape[0]) for g in groups}):
        points = torch.stack([g for g in groups if g.shape[0] == n])  # (b, n, 2)
        dec = seg.decode(points, torch.ones(points.shape[:2], dtype=torch.long))
        parts.append(
            _boxes_of(seg, dec.low_res[:, tokens].flatten(0, 1), dec.iou[:, tokens].flatten())
        )
    return _candidates(parts, seg.device).kept()


def grid_candidates(
    seg: Segmenter,
    grid: torch.Tensor,
    cfg: ProposalsConfig,
    batch: int,
    *,
    prefilter: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The automatic-mask-generator path before its box NMS: every multimask output of every
    grid point (G, 2) that passes the predicted-IoU and stability thresholds, as boxes, scores
    (predicted IoU) and the count of empty masks (among those that pass the IoU threshold).

    With ``prefilter`` (the default on the CPU) the masks below the IoU threshold are dropped
    before their post-processing (less arithmetic); without (the default elsewhere) every mask
    is post-processed and the thresholds are applied once, after the last batch, so that the
    device is not waited on per batch (``Candidates``). The same boxes either way."""
    parts = []
    if prefilter is None:
        prefilter = seg.device.type == "cpu"
    for start in range(0, grid.shape[0], batch):
        p = grid[start : start + batch, None, :]
        dec = seg.decode(p, torch.ones(p.shape[:2], dtype=torch.long))
        low_res, iou = dec.low_res[:, 1:].flatten(0, 1), dec.iou[:, 1:].flatten()  # 3 per point
        # as SAM: IoU >, stability >=, and no filter at a threshold of 0
        if cfg.pred_iou_thresh > 0:
            passed = iou > cfg.pred_iou_thresh
        else:
            passed = torch.ones_like(iou, dtype=torch.bool)
        if prefilter:
            low_res, iou, passed = low_res[passed], iou[passed], passed[passed]
            if not low_res.shape[0]:
                continue
        mb = seg.masks_to_boxes(low_res, stability_offset=cfg.stability_score_offset)
        ok = passed & (mb.areas > 0)
        if cfg.stability_score_thresh > 0:
            ok &= mb.stability >= cfg.stability_score_thresh
        parts.append(Candidates(mb.boxes, iou, ok, (passed & (mb.areas == 0)).sum()))
    return _candidates(parts, seg.device).kept()


def grid_proposals(
    seg: Segmenter, grid: torch.Tensor, cfg: ProposalsConfig, batch: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The automatic-mask-generator path with WeakSAM's thresholds, one crop (the image)."""
    b, s, empty = grid_candidates(seg, grid, cfg, batch)
    kept = mask_box_nms(b, s, cfg.box_nms_thresh)
    return b[kept], s[kept], empty


def mask_box_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> torch.Tensor:
    """Indices kept by the automatic mask generator's box NMS, best first. ``boxes`` (K, 4) are
    x2-exclusive mask boxes; SAM runs NMS on inclusive ones (x2 = last mask pixel), whose IoUs
    are lower for small boxes, so they are converted back first."""
    inclusive = boxes.clone()
    inclusive[:, 2:] -= 1.0
    zeros = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
    return batched_nms(inclusive, scores, zeros, thresh)


def weaksam_proposals(
    seg: Segmenter,
    image: np.ndarray,
    peaks: np.ndarray,
    peak_classes: np.ndarray,
    grid: np.ndarray,
    cfg: ProposalsConfig,
    *,
    batch: int,
) -> ImageProposals:
    """All proposals of one image. peaks: (P, 2) xy; peak_classes: (P,); grid: (G, 2) xy."""
    seg.set_image(image)
    parts: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    empty = 0
    if grid.shape[0]:
        b, s, e = grid_proposals(seg, torch.from_numpy(grid).float(), cfg, batch)
        parts.append(("grid", b, s))
        empty += e
    if peaks.shape[0]:
        pts = torch.from_numpy(peaks).float()
        b, s, e = point_proposals(seg, pts, cfg.keep_multimask, batch)
        parts.append(("peak", b, s))
        empty += e
        if cfg.class_aware:
            groups = [pts[torch.from_numpy(peak_classes == c)] for c in np.unique(peak_classes)]
            b, s, e = class_aware_proposals(seg, groups, cfg.keep_multimask)
            parts.append(("peak_class", b, s))
            empty += e
    if not parts:
        return ImageProposals(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint8), 0
        )
    boxes = torch.cat([b for _, b, _ in parts]).cpu().numpy().astype(np.float32)
    scores = torch.cat([s for _, _, s in parts]).cpu().numpy().astype(np.float32)
    source = np.concatenate([np.full(b.shape[0], SOURCES[name], np.uint8) for name, b, _ in parts])
    return ImageProposals(boxes, scores, source, empty)
