"""The numeric rules of WSOD (METHOD.md sections 7.1 and 7.2) on hand-made cases."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reference_wsod import reference_mist, reference_oicr
from weaksam.config import DropBlockConfig, MistConfig, OicrConfig, WsodConfig
from weaksam.training import batch_indices
from weaksam.wsod.boxes import decode, encode, hflip_boxes
from weaksam.wsod.infer import postprocess
from weaksam.wsod.losses import image_loss, mist_refine_loss, oicr_refine_loss, wsddn_loss
from weaksam.wsod.model import WsodOutput
from weaksam.wsod.pseudo_labels import greedy_nms, mist_pseudo_labels, oicr_pseudo_labels
from weaksam.wsod.train import dropblock_lr_factor, lr_factor, param_groups, refine_ramp


def t(x: list[list[float]] | list[float]) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


FAR = [[100.0 + 20 * i, 100.0, 110.0 + 20 * i, 110.0] for i in range(20)]


# ---- MIST ------------------------------------------------------------------------------------


def test_mist_fewer_than_10_proposals_takes_one_seed() -> None:
    # R = 4 < 10 -> k = 1: the single best box of the positive class 0 (score 0.6) is the seed.
    boxes = t([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 20, 10]])
    scores = t([[0.6, 0.1], [0.3, 0.2], [0.1, 0.9], [0.2, 0.05]])
    pl = mist_pseudo_labels(boxes, scores, t([1, 0]))
    # IoU with the seed: 1, 50/100 = 0.5 (>= 0.5: foreground), 0, 100/200 = 0.5.
    assert pl.gt_boxes.tolist() == [[0, 0, 10, 10]]
    assert pl.labels.tolist() == [1, 1, 0, 1]
    assert pl.weights.tolist() == pytest.approx([0.6] * 4)
    assert pl.targets.tolist() == [[0, 0, 10, 10]] * 4


def test_mist_compares_candidates_with_all_higher_ranked_not_only_seeds() -> None:
    # R = 20 -> k = floor(0.15 * 20) = 3. Ranked: r0 (0.9), r1 (0.8), r2 (0.7).
    # IoU(r0, r1) = 40 / 160 = 0.25 >= 0.2: r1 is no seed.
    # IoU(r0, r2) = 0 but IoU(r1, r2) = 40 / 160 = 0.25: r2 is no seed either, although r1 is not
    # a seed. Only r0 remains.
    boxes = t([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10], *FAR[:17]])
    scores = torch.full((20, 1), 0.01)
    scores[:3, 0] = t([0.9, 0.8, 0.7])
    pl = mist_pseudo_labels(boxes, scores, t([1]))
    assert pl.gt_boxes.tolist() == [[0, 0, 10, 10]]
    assert pl.gt_scores.tolist() == pytest.approx([0.9])
    assert pl.labels.tolist() == [1] + [0] * 19
    assert pl.weights.tolist() == pytest.approx([0.9] * 20)  # background keeps the seed's score


def test_mist_two_seeds_when_top_candidates_are_apart() -> None:
    # Same as above with r1 moved away: IoU(r0, r1) = 0 -> r1 is a seed; r2 overlaps r1 by
    # 40 / 160 = 0.25 -> not a seed. Pseudo boxes in rank order: r0 (0.9), r1 (0.8).
    boxes = t([[0, 0, 10, 10], [30, 0, 40, 10], [36, 0, 46, 10], *FAR[:17]])
    scores = torch.full((20, 1), 0.01)
    scores[:3, 0] = t([0.9, 0.8, 0.7])
    pl = mist_pseudo_labels(boxes, scores, t([1]))
    assert pl.gt_boxes.tolist() == [[0, 0, 10, 10], [30, 0, 40, 10]]
    # r2's best pseudo box is r1 (IoU 0.25 < 0.5): background with weight 0.8.
    assert pl.labels[:3].tolist() == [1, 1, 0]
    assert pl.weights[:3].tolist() == pytest.approx([0.9, 0.8, 0.8])
    # FAR boxes overlap nothing: the first pseudo box (r0, 0.9) by the tie rule.
    assert pl.weights[3:].tolist() == pytest.approx([0.9] * 17)


def test_mist_ties_and_two_classes() -> None:
    # R = 10 -> k = floor(1.5) = 1. Class 0: r0 and r3 tie at 0.5, the lower index (r0) wins.
    # Class 1: r3 (0.7). Pseudo boxes: r0 (class 0, 0.5), r3 (class 1, 0.7).
    boxes = t([[0, 0, 10, 10], [0, 0, 10, 8], [4, 0, 14, 10], [5, 0, 15, 10], *FAR[:6]])
    scores = torch.full((10, 2), 0.01)
    scores[0] = t([0.5, 0.1])
    scores[3] = t([0.5, 0.7])
    pl = mist_pseudo_labels(boxes, scores, t([1, 1]))
    assert pl.gt_boxes.tolist() == [[0, 0, 10, 10], [5, 0, 15, 10]]
    assert pl.gt_classes.tolist() == [0, 1]
    # r1: IoU 80/100 = 0.8 with r0, 40/140 with r3 -> class 0 (label 1), weight 0.5.
    # r2: IoU 60/140 = 0.43 with r0, 90/110 = 0.82 with r3 -> class 1 (label 2), weight 0.7.
    assert pl.labels[:4].tolist() == [1, 1, 2, 2]
    assert pl.weights[:4].tolist() == pytest.approx([0.5, 0.5, 0.7, 0.7])
    assert pl.targets[2].tolist() == [5, 0, 15, 10]


def test_mist_no_positive_class_and_no_proposal() -> None:
    boxes = t([[0, 0, 10, 10], [5, 5, 15, 15]])
    pl = mist_pseudo_labels(boxes, t([[0.9], [0.1]]), t([0]))
    assert pl.labels.tolist() == [0, 0] and pl.weights.tolist() == [0, 0]
    assert pl.gt_boxes.shape == (0, 4)
    empty = mist_pseudo_labels(torch.zeros(0, 4), torch.zeros(0, 1), t([1]))
    assert empty.labels.shape == (0,)


# ---- OICR ------------------------------------------------------------------------------------


def test_oicr_candidates_and_class_agnostic_nms() -> None:
    boxes = t([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [0, 0, 10, 5]])
    # Class 0: max 0.5, candidates >= 0.45: r0 (0.5), r1 (0.46). Class 1: max 0.8, >= 0.72: r2.
    scores = t([[0.50, 0.1], [0.46, 0.2], [0.30, 0.8], [0.10, 0.1]])
    pl = oicr_pseudo_labels(boxes, scores, t([1, 1]))
    # NMS by score: r2 (0.8), r0 (0.5), r1 (0.46) has IoU 90/110 = 0.82 > 0.5 with r0: removed.
    assert pl.gt_boxes.tolist() == [[20, 0, 30, 10], [0, 0, 10, 10]]
    assert pl.gt_classes.tolist() == [1, 0]
    # r3: IoU 50/100 = 0.5 with r0 -> foreground class 0.
    assert pl.labels.tolist() == [1, 1, 2, 1]
    assert pl.weights.tolist() == pytest.approx([0.5, 0.5, 0.8, 0.5])


def test_oicr_nms_is_across_classes() -> None:
    # One box is the top of both classes: class 1 (0.7) keeps it and class 0's copy (0.6) is
    # suppressed (IoU 1). Every proposal of the image then belongs to class 1.
    boxes = t([[0, 0, 10, 10], [0, 0, 10, 9]])
    scores = t([[0.6, 0.7], [0.1, 0.2]])
    pl = oicr_pseudo_labels(boxes, scores, t([1, 1]))
    assert pl.gt_classes.tolist() == [1]
    assert pl.labels.tolist() == [2, 2]
    assert pl.weights.tolist() == pytest.approx([0.7, 0.7])


def test_oicr_ties_keep_the_lower_index() -> None:
    # r0 and r1 tie at the class maximum and overlap (IoU 0.9): NMS keeps r0.
    boxes = t([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]])
    scores = t([[0.4], [0.4], [0.1]])
    pl = oicr_pseudo_labels(boxes, scores, t([1]))
    assert pl.gt_boxes.tolist() == [[0, 0, 10, 10]]
    assert pl.labels.tolist() == [1, 1, 0]
    assert greedy_nms(boxes, t([0.4, 0.4, 0.1]), 0.5).tolist() == [0, 2]


@pytest.mark.parametrize("seed", range(40))
def test_greedy_nms_matches_the_loop_reference(seed: int) -> None:
    """Random boxes with repeated scores and repeated boxes: the same kept indices, in the same
    order, as the plain loop (ties by index), at several IoU thresholds."""
    from tests.reference_wsod import reference_greedy_nms

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 60, (n, 2))], axis=1).astype(np.float32)
    boxes[n // 2 :: 7] = boxes[0]  # exact duplicates
    scores = rng.choice([0.1, 0.2, 0.5, 0.9], n).astype(np.float32)  # many ties
    for thresh in (0.3, 0.5, 0.7):
        got = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), thresh).tolist()
        assert got == reference_greedy_nms(boxes, scores, thresh)


def test_oicr_no_positive_class() -> None:
    pl = oicr_pseudo_labels(t([[0, 0, 10, 10]]), t([[0.9, 0.1]]), t([0, 0]))
    assert pl.labels.tolist() == [0] and pl.weights.tolist() == [0.0]


@pytest.mark.parametrize("seed", range(6))
def test_rules_agree_with_the_loop_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    r, k = int(rng.integers(1, 60)), 4
    xy = rng.uniform(0, 80, (r, 2))
    wh = rng.uniform(4, 40, (r, 2))
    boxes = np.round(np.concatenate([xy, xy + wh], axis=1), 1).astype(np.float32)
    scores = np.round(rng.uniform(0, 1, (r, k)), 2).astype(np.float32)  # rounding makes ties
    labels = (rng.uniform(size=k) < 0.5).astype(np.float32)
    for rule, ref in ((mist_pseudo_labels, reference_mist), (oicr_pseudo_labels, reference_oicr)):
        pl = rule(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels))
        want_labels, want_weights, want_targets = ref(boxes, scores, labels)
        assert pl.labels.tolist() == want_labels.tolist()
        np.testing.assert_allclose(pl.weights.numpy(), want_weights, rtol=1e-6)
        np.testing.assert_allclose(pl.targets.numpy(), want_targets, rtol=1e-6)


# ---- losses ----------------------------------------------------------------------------------


def test_wsddn_loss_by_hand() -> None:
    # phi over 2 RoIs and 2 classes; y = column sums = (0.7, 0.2). Labels (1, 0).
    phi = t([[0.5, 0.1], [0.2, 0.1]])
    want = -math.log(0.7) - math.log(1 - 0.2)  # summed over the classes
    assert float(wsddn_loss(phi, t([1, 0]), background=False)) == pytest.approx(want, rel=1e-6)
    # MIST form: 3 columns, the first is background (label 0), BCE averaged over 3 entries.
    phi3 = t([[0.1, 0.5, 0.1], [0.1, 0.2, 0.1]])  # y = (0.2, 0.7, 0.2)
    want3 = (-math.log(0.8) - math.log(0.7) - math.log(0.8)) / 3
    assert float(wsddn_loss(phi3, t([1, 0]), background=True)) == pytest.approx(want3, rel=1e-6)


def test_wsddn_loss_clamps_a_sum_above_one() -> None:
    phi = t([[0.8], [0.7]])  # y = 1.5, clamped to 1: BCE with label 1 is 0
    assert float(wsddn_loss(phi, t([1]), background=False)) == pytest.approx(0.0, abs=1e-6)


def test_oicr_refine_loss_by_hand() -> None:
    # Uniform logits over K+1 = 3 classes: p = 1/3 for every label. Weights 0.5 and 0.8.
    boxes = t([[0, 0, 10, 10], [50, 0, 60, 10]])
    pl = oicr_pseudo_labels(boxes, t([[0.5, 0.0], [0.0, 0.8]]), t([1, 1]))
    assert pl.labels.tolist() == [1, 2]
    loss = oicr_refine_loss(torch.zeros(2, 3), pl)
    assert float(loss) == pytest.approx((0.5 + 0.8) / 2 * -math.log(1 / 3 + 1e-6), rel=1e-6)


def test_mist_refine_loss_by_hand() -> None:
    # One seed (r0, score 0.6); r1 is background. Logits uniform over 2 classes: CE = log 2.
    rois = t([[0, 0, 10, 10], [50, 0, 60, 10]])
    pl = mist_pseudo_labels(rois, t([[0.6], [0.1]]), t([1]))
    deltas = torch.zeros(2, 8)
    deltas[0, 4:] = 1.0  # class 1's deltas of r0: target is 0 (the seed is r0) -> 4 x 0.5
    cls, reg = mist_refine_loss(torch.zeros(2, 2), deltas, rois, pl, 3.0)
    assert float(cls) == pytest.approx(3.0 * 0.6 * math.log(2), rel=1e-6)
    assert float(reg) == pytest.approx(3.0 * 0.6 * 2.0 / 2, rel=1e-6)  # / R = 2


def test_image_loss_uses_background_free_scores_for_refinements() -> None:
    # A MIST output whose refinement 1 puts all mass on background: refinement 2 must still take
    # its pseudo-labels from the foreground columns (here all equal, so rank by index: r0).
    rois = t([[0, 0, 10, 10], [50, 0, 60, 10]])
    out = WsodOutput(
        cls=torch.zeros(2, 2),
        det=torch.zeros(2, 2),
        refine=[t([[9.0, 0.0], [9.0, 0.0]]), torch.zeros(2, 2), torch.zeros(2, 2)],
        bbox=[torch.zeros(2, 8)] * 3,
    )
    loss = image_loss(out, rois, t([1]), head="mist", mist=MistConfig(), oicr=OicrConfig())
    assert set(loss.parts) == {"mil", "ref1", "reg1", "ref2", "reg2", "ref3", "reg3"}
    assert math.isfinite(float(loss.total))


def _two_roi_output(head: str) -> WsodOutput:
    # two classes (K = 2); MIST's MIL and every refinement carry a background column first
    mil_cols = 3 if head == "mist" else 2
    return WsodOutput(
        cls=torch.linspace(-1, 1, 2 * mil_cols).view(2, mil_cols).requires_grad_(),
        det=torch.linspace(1, -1, 2 * mil_cols).view(2, mil_cols).requires_grad_(),
        refine=[t([[0.0, 1.0, 0.2], [0.5, 0.0, 0.1]]).requires_grad_() for _ in range(3)],
        # non-zero deltas: the box-regression parts are non-zero too
        bbox=[torch.full((2, 12), 0.3, requires_grad=True) for _ in range(3)]
        if head == "mist"
        else [],
    )


@pytest.mark.parametrize("head", ["mist", "oicr"])
def test_refine_weight_scales_only_the_refinement_losses(head: str) -> None:
    rois, labels = t([[0, 0, 10, 10], [50, 0, 60, 10]]), t([1, 0])
    kw = {"head": head, "mist": MistConfig(), "oicr": OicrConfig()}
    full = image_loss(_two_roi_output(head), rois, labels, **kw)  # type: ignore[arg-type]
    refinements = sum(v for k, v in full.parts.items() if k != "mil")
    assert refinements > 0
    if head == "mist":  # the weight must reach the box regression as well
        assert min(full.parts[f"reg{k}"] for k in (1, 2, 3)) > 0
    assert full.total.item() == pytest.approx(full.parts["mil"] + refinements, rel=1e-6)
    out = _two_roi_output(head)
    half = image_loss(out, rois, labels, refine_weight=0.5, **kw)  # type: ignore[arg-type]
    # the parts are logged before the weight; the total carries half of the refinements
    assert half.parts == pytest.approx(full.parts)
    assert half.total.item() == pytest.approx(full.parts["mil"] + 0.5 * refinements, rel=1e-6)
    out = _two_roi_output(head)
    none = image_loss(out, rois, labels, refine_weight=0.0, **kw)  # type: ignore[arg-type]
    assert none.total.item() == full.parts["mil"]
    none.total.backward()
    # weight 0: the refinement layers get no gradient, the MIL streams still do
    assert all(float(r.grad.abs().sum()) == 0.0 for r in out.refine)  # type: ignore[union-attr]
    assert float(out.det.grad.abs().sum()) > 0  # type: ignore[union-attr]


def test_refine_ramp_by_hand() -> None:
    # N = 4: (step + 1) / 4 for 0-based steps 0-3, then 1; N = 0 (the default): always 1
    cfg = replace(WsodConfig(), refine_ramp_iterations=4)
    assert [refine_ramp(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert refine_ramp(0, WsodConfig()) == 1.0


# ---- boxes, schedule, inference --------------------------------------------------------------


def test_box_coder_by_hand() -> None:
    # roi (0, 0, 10, 10): centre (5, 5), 10 x 10. gt (0, 0, 20, 10): centre (10, 5), 20 x 10.
    d = encode(t([[0, 0, 20, 10]]), t([[0, 0, 10, 10]]))
    assert d[0].tolist() == pytest.approx([10 * 5 / 10, 0.0, 5 * math.log(2), 0.0])
    assert decode(d, t([[0, 0, 10, 10]]))[0].tolist() == pytest.approx([0, 0, 20, 10], abs=1e-5)
    # dw is clamped at log(1000 / 16): a huge delta gives width 10 * 1000 / 16 = 625.
    big = decode(t([[0, 0, 5 * 100.0, 0]]), t([[0, 0, 10, 10]]))
    assert float(big[0, 2] - big[0, 0]) == pytest.approx(625.0, rel=1e-5)


def test_hflip_boxes() -> None:
    assert hflip_boxes(t([[10, 0, 30, 5]]), 100.0).tolist() == [[70, 0, 90, 5]]


def test_lr_schedule_by_hand() -> None:
    cfg = WsodConfig()  # warm-up 200 from 1/3, x0.1 at 20000 and 26700
    assert lr_factor(0, cfg) == pytest.approx(1 / 3)
    assert lr_factor(100, cfg) == pytest.approx(1 / 3 * 0.5 + 0.5)
    assert lr_factor(200, cfg) == pytest.approx(1.0)
    assert lr_factor(19999, cfg) == pytest.approx(1.0)
    assert lr_factor(20000, cfg) == pytest.approx(0.1)
    assert lr_factor(26700, cfg) == pytest.approx(0.01)


def test_dropblock_schedule_by_hand() -> None:
    # VOC: the detector's warm-up (200 from 1/3) and steps (20000, 26700), x3 at each
    cfg = WsodConfig(dropblock=DropBlockConfig(enabled=True))
    assert dropblock_lr_factor(0, cfg) == pytest.approx(1 / 3)
    assert dropblock_lr_factor(100, cfg) == pytest.approx(1 / 3 * 0.5 + 0.5)
    assert dropblock_lr_factor(19999, cfg) == pytest.approx(1.0)
    assert dropblock_lr_factor(20000, cfg) == pytest.approx(3.0)
    assert dropblock_lr_factor(26700, cfg) == pytest.approx(9.0)
    assert lr_factor(26700, cfg) == pytest.approx(0.01)  # while the detector's falls
    # COCO: its own 500-step warm-up and x0.1 at 30000
    coco = replace(
        cfg,
        dropblock=DropBlockConfig(
            enabled=True, gamma=0.1, lr_steps=(30000,), warmup_iterations=500
        ),
    )
    assert dropblock_lr_factor(250, coco) == pytest.approx(1 / 3 * 0.5 + 0.5)
    assert dropblock_lr_factor(29999, coco) == pytest.approx(1.0)
    assert dropblock_lr_factor(30000, coco) == pytest.approx(0.1)


def test_param_groups_bias_and_refinement_rates() -> None:
    lin, ref = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    bn = torch.nn.BatchNorm2d(2)
    named = [
        ("fc.0.weight", lin.weight),
        ("fc.0.bias", lin.bias),
        ("refine.0.weight", ref.weight),
        ("refine.0.bias", ref.bias),
        ("dropblock.body.1.weight", bn.weight),  # 1-D, but a scale: a weight (wetectron)
    ]
    cfg = WsodConfig(lr=1e-5, weight_decay=5e-4, bias_lr_mult=2.0, refine_lr_mult=10.0)

    def rates(cfg: WsodConfig, head: str) -> dict[str, tuple[float, float]]:
        groups = param_groups(named, lr=cfg.lr, cfg=cfg, head=head)  # type: ignore[arg-type]
        by_param = {
            id(p): (float(f"{g['lr']:.6g}"), g["weight_decay"]) for g in groups for p in g["params"]
        }
        return {name: by_param[id(p)] for name, p in named}

    # MIST (wetectron's solver): bias x2 without decay, on top of the refinement multiplier
    assert rates(cfg, "mist") == {
        "fc.0.weight": (1e-5, 5e-4),
        "fc.0.bias": (2e-5, 0.0),  # 1e-5 x 2
        "refine.0.weight": (1e-4, 5e-4),  # 1e-5 x 10
        "refine.0.bias": (2e-4, 0.0),  # 1e-5 x 10 x 2
        "dropblock.body.1.weight": (1e-5, 5e-4),
    }
    # unset: OICR's refinement layers at 10x (METHOD.md 7.2), MIST's at 1x. OICR's mmcv
    # optimiser gives a parameter matched by its custom key `refine` that key's rate and the
    # normal decay, skipping the bias rules: the refinement bias at 1e-5 x 10, with decay
    default = replace(cfg, refine_lr_mult=None)
    assert rates(default, "oicr") == {
        "fc.0.weight": (1e-5, 5e-4),
        "fc.0.bias": (2e-5, 0.0),
        "refine.0.weight": (1e-4, 5e-4),
        "refine.0.bias": (1e-4, 5e-4),
        "dropblock.body.1.weight": (1e-5, 5e-4),
    }
    mist = rates(default, "mist")
    assert mist["refine.0.weight"] == (1e-5, 5e-4) and mist["refine.0.bias"] == (2e-5, 0.0)
    # the backbone at 0.1 x: weight 1e-6, bias 2e-6
    conv = torch.nn.Conv2d(1, 1, 1)
    named += [("backbone.body.0.weight", conv.weight), ("backbone.body.0.bias", conv.bias)]
    tenth = rates(replace(default, backbone_lr_mult=0.1), "mist")
    assert tenth["backbone.body.0.weight"] == (1e-6, 5e-4)
    assert tenth["backbone.body.0.bias"] == (2e-6, 0.0)


def test_batch_indices_cover_an_epoch() -> None:
    seen = batch_indices(0, 10, 4, 0) + batch_indices(1, 10, 4, 0)
    assert len(set(seen)) == 8  # two steps of one epoch never repeat an image
    assert sorted(batch_indices(0, 3, 8, 0)) == [0, 1, 2]  # a batch above the image count


def test_tta_clips_each_pass_before_averaging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two passes over a 100 x 100 image at scale 1: plain, then flipped. One box, one class.
    Plain pass: [-40, 10, 50, 60] -> clipped [0, 10, 50, 60]. Flipped pass: [20, 10, 90, 60] in
    the mirrored image -> [10, 10, 80, 60] unmirrored (x -> 100 - x). Mean: [5, 10, 65, 60].
    Clipping the mean instead would give x1 = max(0, (-40 + 10) / 2) = 0."""
    from weaksam.wsod import infer

    per_pass = iter([t([[[-40, 10, 50, 60]]]), t([[[20, 10, 90, 60]]])])

    def fixed(model: object, out: object, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(1, 1), next(per_pass)

    monkeypatch.setattr(infer, "pass_scores", fixed)
    model = torch.nn.Linear(1, 1)
    model.num_classes = 1  # type: ignore[assignment]
    model.forward = lambda *a: None  # type: ignore[method-assign]
    cfg = WsodConfig(test_scales=(100,), test_flip=True, max_side=1000)
    scores, boxes = infer.tta_scores(model, torch.zeros(3, 100, 100), t([[0, 0, 50, 50]]), cfg)  # type: ignore[arg-type]
    assert scores.tolist() == [[1.0]]
    assert boxes.tolist() == [[[5.0, 10.0, 65.0, 60.0]]]


def test_postprocess_nms_per_class_and_top_k() -> None:
    # 3 proposals x 2 classes. Class 0: r0 (0.9) and r1 (0.8) overlap (IoU 0.9): r1 removed.
    # Class 1 keeps r1 (0.5), r2 (0.0 is not > 0 and is dropped).
    boxes = t([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]])[:, None, :].expand(-1, 2, -1)
    scores = t([[0.9, 0.1], [0.8, 0.5], [0.3, 0.0]])
    dets = postprocess(scores, boxes.clone(), WsodConfig(test_nms=0.3, max_per_image=3))
    got = sorted(zip(dets.labels.tolist(), dets.scores.tolist(), strict=True), key=lambda x: -x[1])
    assert [(c, round(s, 3)) for c, s in got] == [(0, 0.9), (1, 0.5), (0, 0.3)]


def test_postprocess_drops_boxes_clipped_to_no_area() -> None:
    # 4 proposals, 1 class, max 2 per image. r0 (0.9) was clipped to a line (x1 = x2 = 0) and r1
    # (0.8) to a point: both dropped, so the 2 places go to r2 (0.5) and r3 (0.4), which do not
    # overlap. Kept, r0 and r1 would have filled both places.
    boxes = t([[0, 0, 0, 10], [5, 5, 5, 5], [0, 0, 10, 10], [20, 20, 30, 30]])[:, None, :]
    scores = t([[0.9], [0.8], [0.5], [0.4]])
    dets = postprocess(scores, boxes.clone(), WsodConfig(test_nms=0.3, max_per_image=2))
    assert dets.scores.tolist() == pytest.approx([0.5, 0.4])
    assert dets.boxes.tolist() == [[0, 0, 10, 10], [20, 20, 30, 30]]


def test_vgg16_fc6_fc7_start_from_the_weight_file(tmp_path: Path) -> None:
    from torch import nn

    from weaksam.models.backbones import load_vgg16_fc

    def head(in_dim: int, dim: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(), nn.Linear(dim, dim), nn.ReLU()
        )

    state = {
        "classifier.0.weight": torch.full((8, 36), 0.5),
        "classifier.0.bias": torch.full((8,), 0.25),
        "classifier.3.weight": torch.eye(8),
        "classifier.3.bias": torch.zeros(8),
        "classifier.6.weight": torch.zeros(1000, 8),  # ImageNet logits: not part of the head
        "features.0.weight": torch.zeros(300_000),  # filler above the 1 MiB sanity size
    }
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    fc = head(36, 8)
    assert load_vgg16_fc(fc, path)
    assert (fc[0].weight == 0.5).all() and (fc[0].bias == 0.25).all()
    assert torch.equal(fc[3].weight, torch.eye(8))
    narrow = head(36, 4)  # a narrower head keeps its own start
    before = narrow[0].weight.clone()
    assert not load_vgg16_fc(narrow, path)
    assert torch.equal(narrow[0].weight, before)
