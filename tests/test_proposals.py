"""Proposal generation rules on a stub segmenter whose outputs are known, filters, the store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from weaksam.config import ProposalsConfig
from weaksam.h5store import ShardWriter, StoreError
from weaksam.proposals.filters import filter_proposals
from weaksam.proposals.generate import (
    SOURCES,
    class_aware_proposals,
    grid_candidates,
    grid_proposals,
    mask_box_nms,
    point_proposals,
    weaksam_proposals,
)
from weaksam.proposals.store import ProposalReader
from weaksam.sam.predictor import Decoded, MaskBoxes


class StubSegmenter:
    """decode: token t of prompt b gets logits filled with code 10 * b + t and predicted IoU
    ``iou[t]``; masks_to_boxes and mask_boxes turn code c into the box (c, c, c + 5, c + 5)."""

    device = torch.device("cpu")

    def __init__(
        self, iou: tuple[float, float, float, float] = (0.9, 0.8, 0.7, 0.6), stability: float = 0.9
    ) -> None:
        self.iou = torch.tensor(iou)
        self.stability = stability
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.offsets: list[float] = []

    def set_image(self, image: np.ndarray) -> None:
        self.image = image

    def decode(
        self,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
    ) -> Decoded:
        assert points is not None and labels is not None and boxes is None
        self.calls.append((points, labels))
        b = points.shape[0]
        codes = 10.0 * torch.arange(b)[:, None] + torch.arange(4)[None, :]  # (B, 4)
        return Decoded(
            codes[:, :, None, None].expand(b, 4, 2, 2).clone(), self.iou.expand(b, 4).clone()
        )

    def masks_to_boxes(self, low_res: torch.Tensor, *, stability_offset: float = 1.0) -> MaskBoxes:
        self.offsets.append(stability_offset)
        c = low_res[:, 0, 0]
        boxes = torch.stack([c, c, c + 5, c + 5], dim=1)
        return MaskBoxes(boxes, torch.full((len(c),), 25), torch.full((len(c),), self.stability))

    def mask_boxes(self, low_res: torch.Tensor) -> torch.Tensor:
        c = low_res[:, 0, 0]
        return torch.stack([c, c, c + 5, c + 5], dim=1)


def test_point_prompts_keep_multimask_outputs_1_and_2() -> None:
    seg = StubSegmenter()
    boxes, scores, empty = point_proposals(
        seg, torch.tensor([[5.0, 5.0], [9.0, 9.0]]), (1, 2), batch=64
    )
    # multimask outputs 1 and 2 are decoder tokens 2 and 3: codes 2, 3 (prompt 0), 12, 13 (prompt 1)
    assert boxes[:, 0].tolist() == [2, 3, 12, 13]
    assert scores.tolist() == pytest.approx([0.7, 0.6, 0.7, 0.6]) and empty == 0
    pts, labels = seg.calls[0]
    assert pts.shape == (2, 1, 2) and labels.tolist() == [[1], [1]]


def test_class_aware_prompts_are_never_padded() -> None:
    seg = StubSegmenter()
    groups = [
        torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]),
        torch.tensor([[7.0, 7.0]]),
        torch.tensor([[4.0, 4.0], [5.0, 5.0], [6.0, 6.0]]),
    ]
    boxes, _, _ = class_aware_proposals(seg, groups, (1, 2))
    # One decode per point count, fewest points first: [class 1], then [class 0, class 2].
    (pts1, labels1), (pts3, labels3) = seg.calls
    assert labels1.tolist() == [[1]] and pts1.tolist() == [[[7, 7]]]
    assert labels3.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert pts3[1].tolist() == [[4, 4], [5, 5], [6, 6]]
    # tokens 2, 3 of prompt 0 (codes 2, 3), then of prompts 0 and 1 of the second call
    assert boxes[:, 0].tolist() == [2, 3, 2, 3, 12, 13]


def test_grid_thresholds_and_nms() -> None:
    # multimask outputs (tokens 1..3) have IoU 0.8, 0.7, 0.25: the last fails pred_iou > 0.3.
    seg = StubSegmenter(iou=(0.99, 0.8, 0.7, 0.25))
    cfg = ProposalsConfig(box_nms_thresh=0.3)
    boxes, scores, _ = grid_proposals(seg, torch.tensor([[1.0, 1.0], [2.0, 2.0]]), cfg, batch=64)
    # Boxes (c, c, c+5, c+5) for codes 1, 2 and 11, 12: codes 1 and 2 overlap with IoU 16/34 > 0.3,
    # so NMS keeps code 1 (IoU 0.8) and drops 2 (0.7); likewise 11 kept, 12 dropped.
    assert sorted(boxes[:, 0].tolist()) == [1, 11]
    assert sorted(scores.tolist()) == pytest.approx([0.8, 0.8])
    assert seg.offsets == [cfg.stability_score_offset]
    offset = ProposalsConfig(stability_score_offset=2.5)
    grid_proposals(seg, torch.tensor([[1.0, 1.0]]), offset, batch=64)
    assert seg.offsets[-1] == 2.5  # the configured offset reaches the stability score
    unstable = StubSegmenter(iou=(0.99, 0.8, 0.7, 0.6), stability=0.2)
    assert grid_proposals(unstable, torch.tensor([[1.0, 1.0]]), cfg, batch=64)[0].shape == (0, 4)
    # a threshold of 0 switches the predicted-IoU filter off (SAM's guard): a negative predicted
    # IoU is kept, and NMS ranks by it (codes 1, 2, 3 with IoU 0.8, 0.7, -0.1: 1 kept; as SAM's
    # inclusive 6 x 6 boxes, 2 overlaps it at 25/47 > 0.3 and goes, 3 at 16/56 < 0.3 and stays)
    off = replace(cfg, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    negative = StubSegmenter(iou=(0.99, 0.8, 0.7, -0.1))
    boxes, scores, _ = grid_proposals(negative, torch.tensor([[1.0, 1.0]]), off, batch=64)
    assert sorted(boxes[:, 0].tolist()) == [1, 3]
    assert sorted(scores.tolist()) == pytest.approx([-0.1, 0.8])


class ThresholdStub(StubSegmenter):
    """The stub with codes 100 * call + 10 * b + t (distinct across batches); the masks of
    codes 2, 3 and 103 are empty and code 11's is unstable (0.2)."""

    def decode(
        self,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
    ) -> Decoded:
        call = len(self.calls)
        dec = super().decode(points, labels, boxes)
        return Decoded(dec.low_res + 100.0 * call, dec.iou)

    def masks_to_boxes(self, low_res: torch.Tensor, *, stability_offset: float = 1.0) -> MaskBoxes:
        self.offsets.append(stability_offset)
        c = low_res[:, 0, 0]
        boxes = torch.stack([c, c, c + 5, c + 5], dim=1)
        empty = (c == 2) | (c == 3) | (c == 103)
        boxes[empty] = 0.0
        return MaskBoxes(boxes, torch.where(empty, 0, 25), torch.where(c == 11, 0.2, 0.9))


@pytest.mark.parametrize("prefilter", [True, False])
def test_grid_thresholds_applied_per_batch_or_after_the_last(prefilter: bool) -> None:
    """The grid's thresholds dropped before the post-processing (the CPU's way) or applied once
    after the last batch (a GPU's): the same candidates, in the same order. Three points in
    batches of 2: masks 1, 2, 3, 11, 12, 13 (call 0), then 101, 102, 103 (call 1). Tokens 1..3
    have IoU 0.8, 0.25, 0.7, so token 2 (codes 2, 12, 102) fails IoU > 0.3 whatever its mask:
    12 and 102 are good masks and still go, 2 is empty and is not counted. Of the rest, 3 and
    103 are empty (2 counted) and 11 is unstable (0.2 < 0.3). Kept: 1, 13, 101."""
    seg = ThresholdStub(iou=(0.99, 0.8, 0.25, 0.7))
    grid = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    boxes, scores, empty = grid_candidates(
        seg, grid, ProposalsConfig(), batch=2, prefilter=prefilter
    )
    assert boxes[:, 0].tolist() == [1, 13, 101] and boxes[:, 2].tolist() == [6, 18, 106]
    assert scores.tolist() == pytest.approx([0.8, 0.7, 0.8]) and empty == 2
    # thresholds of 0 switch both filters off: every non-empty mask, all 3 empties counted
    off = ProposalsConfig(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    seg = ThresholdStub(iou=(0.99, 0.8, 0.25, 0.7))
    boxes, scores, empty = grid_candidates(seg, grid, off, batch=2, prefilter=prefilter)
    assert boxes[:, 0].tolist() == [1, 11, 12, 13, 101, 102] and empty == 3
    assert scores.tolist() == pytest.approx([0.8, 0.8, 0.25, 0.7, 0.8, 0.25])


def test_sources_merge_in_order_and_no_prompts() -> None:
    seg = StubSegmenter()
    img = np.zeros((50, 50, 3), np.uint8)
    res = weaksam_proposals(
        seg,
        img,
        np.array([[5, 5]], np.float32),
        np.array([0]),
        np.array([[9, 9]], np.float32),
        ProposalsConfig(box_nms_thresh=1.0),
        batch=8,
    )
    assert (
        res.source.tolist()
        == [SOURCES["grid"]] * 3 + [SOURCES["peak"]] * 2 + [SOURCES["peak_class"]] * 2
    )
    none = weaksam_proposals(
        seg,
        img,
        np.zeros((0, 2), np.float32),
        np.zeros(0, np.int64),
        np.zeros((0, 2), np.float32),
        ProposalsConfig(),
        batch=8,
    )
    assert none.boxes.shape == (0, 4) and none.source.shape == (0,)


def test_load_filters_hand_worked() -> None:
    boxes = np.array(
        [
            [10, 10, 50, 50],  # kept
            [10, 10, 50, 50],  # exact duplicate of the first: dropped
            [-5, 0, 40, 30],  # clipped to (0, 0, 40, 30): kept
            [0, 0, 15, 100],  # 15 wide < 20: dropped
            [90, 90, 130, 130],  # clipped to (90, 90, 100, 100): 10 x 10 < 20, dropped
            [0, 0, 0, 0],  # empty: dropped
        ],
        np.float32,
    )
    b, s, src = filter_proposals(
        boxes,
        np.arange(6, dtype=np.float32),
        np.arange(6, dtype=np.uint8),
        width=100,
        height=100,
        min_side=20,
    )
    assert b.tolist() == [[10, 10, 50, 50], [0, 0, 40, 30]]
    assert s.tolist() == [0, 2] and src.tolist() == [0, 2]


def test_filter_proposals_max_area_fraction() -> None:
    # a 100 x 80 image (area 8,000); cap 0.5 keeps boxes of area <= 4,000
    boxes = np.array(
        [
            [0, 0, 100, 80],  # the whole image, 8,000 = 1.0: dropped
            [0, 0, 50, 80],  # 4,000 = exactly 0.5: kept
            [0, 0, 60, 70],  # 4,200 = 0.525: dropped
            [-20, -20, 60, 60],  # clipped to (0, 0, 60, 60), 3,600 = 0.45: kept
            [10, 10, 30, 30],  # 400 = 0.05: kept
        ],
        np.float32,
    )
    args = (boxes, np.arange(5, dtype=np.float32), np.arange(5, dtype=np.uint8))
    b, s, _ = filter_proposals(*args, width=100, height=80, min_side=0, max_area_fraction=0.5)
    assert s.tolist() == [1, 3, 4]
    assert b.tolist() == [[0, 0, 50, 80], [0, 0, 60, 60], [10, 10, 30, 30]]
    # off (METHOD.md): every box is kept
    b, _, _ = filter_proposals(*args, width=100, height=80, min_side=0)
    assert len(b) == 5


def test_store_reader_filters_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    with ShardWriter(out, kind="proposals", config_digest="abc", attrs={"method": "weaksam"}) as w:
        w.write(
            "a",
            {
                "boxes": np.array([[0, 0, 50, 50], [0, 0, 5, 5]], np.float32),
                "scores": np.ones(2, np.float32),
                "source": np.zeros(2, np.uint8),
            },
        )
        w.write(
            "b",
            {
                "boxes": np.zeros((0, 4), np.float32),
                "scores": np.zeros(0, np.float32),
                "source": np.zeros(0, np.uint8),
            },
        )
    with ProposalReader(out, config_digest="abc", min_side=20) as r:
        assert r.load("a", 100, 100).boxes.tolist() == [[0, 0, 50, 50]]
        assert r.raw("a").boxes.shape == (2, 4)
        with pytest.raises(StoreError, match="'b' has no proposals"):
            r.require_nonempty("b", 100, 100)
    with pytest.raises(StoreError, match="config digest"):
        ProposalReader(out, config_digest="other")
    # the area cap leaves image "a" (100 x 100) only its 5 x 5 box, below the minimum side
    with (
        ProposalReader(out, min_side=20, max_area_fraction=0.2) as r,
        pytest.raises(StoreError, match=r"'a' has no proposals.*max area fraction 0\.2"),
    ):
        r.require_nonempty("a", 100, 100)


def test_keep_multimask_config_changes_tokens() -> None:
    seg = StubSegmenter()
    boxes, _, _ = point_proposals(
        seg,
        torch.tensor([[5.0, 5.0]]),
        replace(ProposalsConfig(), keep_multimask=(0,)).keep_multimask,
        batch=4,
    )
    assert boxes[:, 0].tolist() == [1]


def test_grid_nms_sees_sams_inclusive_mask_boxes() -> None:
    # Exclusive boxes A = [0, 0, 4, 4], B = [2, 0, 6, 4]: IoU 8 / 24 = 0.33 > 0.3 would drop B.
    # SAM's inclusive boxes [0, 0, 3, 3], [2, 0, 5, 3]: intersection 1 x 3 = 3, areas 9 and 9,
    # IoU 3 / 15 = 0.2 <= 0.3: both kept, best first.
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 0.0, 6.0, 4.0], [2.0, 0.0, 4.0, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # C = [2, 0, 4, 4] -> [2, 0, 3, 3] inside A's [0, 0, 3, 3]: IoU 1 x 3 / 9 = 0.33, dropped
    assert mask_box_nms(boxes, scores, 0.3).tolist() == [0, 1]


def test_recall_and_the_oracle_store_leave_crowd_boxes_out(tmp_path: Path) -> None:
    """Proposals equal to each image's boxes: recall counts every box but the crowd one; the
    WSOD bound's store appends the non-crowd boxes, source ``ground_truth``, score 1."""
    import json

    from tests.conftest import build_tiny_shapes
    from weaksam.config import load_config
    from weaksam.data.manifest import read_manifest
    from weaksam.evaluation.cocofiles import load_ground_truth
    from weaksam.proposals.stage import oracle_proposals_stage, recall_stage

    out = build_tiny_shapes(tmp_path, num_trainval=2)
    gt_path = out / "gt" / "trainval.json"
    raw = json.loads(gt_path.read_text())
    raw["annotations"][0]["iscrowd"] = 1
    gt_path.write_text(json.dumps(raw))
    gt = load_ground_truth(gt_path)
    frame = read_manifest(out / "manifest.parquet").split("trainval")
    store = tmp_path / "p.h5"
    attrs = {"method": "m", "model": "stub", "classes": "[]", "split": "trainval"}
    with ShardWriter(store, kind="proposals", config_digest="d", attrs=attrs) as w:
        for row in frame.itertuples():
            boxes = gt.boxes[gt.box_image_ids == int(row.coco_id)].astype(np.float32)
            n = len(boxes)
            w.write(
                str(row.image_id),
                {"boxes": boxes, "scores": np.ones(n, np.float32), "source": np.zeros(n, np.uint8)},
            )
    cfg = load_config({"dataset": {"name": "t", "format": "shapes"}, "proposals": {"min_side": 1}})
    recall_stage(
        cfg,
        str(out / "manifest.parquet"),
        str(store),
        str(gt_path),
        "trainval",
        str(tmp_path / "r.json"),
    )
    result = json.loads((tmp_path / "r.json").read_text())
    total = len(raw["annotations"])
    assert result["num_gt"] == total - 1  # the crowd box is left out
    assert result["recall"]["0.5"][-1] == 1.0  # "all" proposals

    oracle_proposals_stage(
        str(out / "manifest.parquet"), str(store), str(gt_path), "trainval",
        str(tmp_path / "o.h5"), digest="d", oracle_digest="o",
    )  # fmt: skip
    added = 0
    with ProposalReader(tmp_path / "o.h5", config_digest="o") as reader:
        for row in frame.itertuples():
            p = reader.raw(str(row.image_id))
            own = int((gt.box_image_ids == int(row.coco_id)).sum())
            gts = p.source == SOURCES["ground_truth"]
            assert len(p.boxes) - gts.sum() == own  # the proposals first, unchanged
            assert (p.scores[gts] == 1).all()
            added += int(gts.sum())
    assert added == total - 1


def test_selective_search_boxes_depend_on_the_image_alone() -> None:
    """OpenCV ranks Selective Search regions with C's rand(): an image's boxes must not depend
    on the images handled before it in the process (another sharding, a resumed run)."""
    from weaksam.proposals.selective_search import selective_search

    rng = np.random.default_rng(0)
    images = [(rng.random((120, 160, 3)) * 255).astype(np.uint8) for _ in range(3)]
    first = selective_search(images[2], max_boxes=2000)
    for other in images[:2]:
        selective_search(other, max_boxes=2000)
    again = selective_search(images[2], max_boxes=2000)
    assert len(first.boxes) > 20
    np.testing.assert_array_equal(first.boxes, again.boxes)
    np.testing.assert_array_equal(first.scores, again.scores)
