"""Box-prompted masks (METHOD.md section 11): post-processing rules and mask IoU by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from weaksam.data.masks import encode_rle, mask_iou
from weaksam.sam.predictor import Decoded
from weaksam.wsis.masks import box_mask, cover_mask, largest_component, masks_for_boxes
from weaksam.wsis.stage import mask_quality


def test_largest_component_by_hand() -> None:
    m = np.zeros((6, 8), bool)
    m[0:2, 0:2] = True  # 4 pixels
    m[3:6, 4:8] = True  # 12 pixels
    m[5, 0] = True  # 1 pixel
    out = largest_component(m)
    assert out.sum() == 12 and out[3:6, 4:8].all()
    # Diagonal neighbours are connected (8-connectivity): one component of 3 stays whole.
    d = np.eye(3, dtype=bool)
    assert largest_component(d).sum() == 3
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_box_mask_uses_pixel_centres() -> None:
    # Box (1, 0, 3, 2) covers pixel columns 1 and 2 (centres 1.5, 2.5) and rows 0, 1.
    m = box_mask(np.array([1.0, 0.0, 3.0, 2.0]), 3, 4)
    assert m.astype(int).tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def test_mask_iou_by_hand() -> None:
    a = np.zeros((1, 4, 4), bool)
    a[0, :2, :] = True  # 8 pixels
    b = np.zeros((2, 4, 4), bool)
    b[0, :, :2] = True  # 8 pixels, 4 shared -> 4 / 12
    b[1] = a[0]
    assert mask_iou(a, b)[0].tolist() == pytest.approx([1 / 3, 1.0])
    assert mask_iou(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool))[0, 0] == 0.0


class StubSegmenter:
    """Returns, for each box prompt, a mask made of the box's left half plus a stray pixel far
    away; the last prompt gets an empty mask."""

    original_size = (20, 30)

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []

    def decode(self, boxes: torch.Tensor, **_: Any) -> Decoded:
        self.calls.append(boxes.clone())
        return Decoded(torch.zeros(len(boxes), 4, 256, 256), torch.zeros(len(boxes), 4))

    def full_masks(self, low_res: torch.Tensor) -> torch.Tensor:
        boxes = self.calls[-1]
        out = torch.zeros(len(boxes), 20, 30, dtype=torch.bool)
        for k, (x1, y1, x2, _y2) in enumerate(boxes.long().tolist()):
            if k == len(boxes) - 1 and len(self.calls) == 2:
                continue  # the very last box of the image: empty
            out[k, y1 : y1 + 4, x1 : (x1 + x2) // 2] = True
            out[k, 19, 29] = True
        return out


def test_masks_for_boxes_options_and_empty_fill() -> None:
    boxes = np.array([[0, 0, 10, 10], [12, 2, 20, 12], [-5, 0, 8, 40]], dtype=np.float32)
    seg = StubSegmenter()
    out = masks_for_boxes(seg, boxes, largest=True, clip_to_box=False, batch=2)  # type: ignore[arg-type]
    assert [len(c) for c in seg.calls] == [2, 1]  # batched by 2
    assert seg.calls[1][0].tolist() == [0.0, 0.0, 8.0, 20.0]  # boxes clipped to the image
    # box 0: rows 0-3, columns 0-4 (20 px) kept; the stray pixel is a smaller component.
    assert out.masks[0].sum() == 20 and not out.masks[0][19, 29]
    # the last box had an empty mask: filled with its (clipped) box, and flagged.
    assert out.filled.tolist() == [False, False, True]
    assert out.masks[2].sum() == 8 * 20
    clipped = masks_for_boxes(StubSegmenter(), boxes[:1], largest=False, clip_to_box=True)  # type: ignore[arg-type]
    assert clipped.masks[0].sum() == 20  # the stray pixel lies outside the box


def test_mask_quality_by_hand() -> None:
    full = np.zeros((4, 4), bool)
    full[:2, :] = True  # ground truth of class 1: the top half (8 px)
    left = np.zeros((4, 4), bool)
    left[:, :2] = True  # 8 px, 4 shared with the top half -> IoU 1/3
    gt = {
        "images": [{"id": 1, "width": 4, "height": 4}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 4, 2],
                "segmentation": encode_rle(full),
            },
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 4]},  # no mask
        ],
    }
    predicted = [
        {"image_id": 1, "category_id": 1, "segmentation": encode_rle(left)},  # 1/3
        {"image_id": 1, "category_id": 1, "segmentation": encode_rle(full)},  # 1
        {"image_id": 1, "category_id": 2, "segmentation": encode_rle(left)},  # no gt mask: unjudged
        {"image_id": 1, "category_id": 3, "segmentation": encode_rle(left)},  # class absent: 0
    ]
    q = mask_quality(gt, predicted, ["a", "b", "c"])
    assert q["per_class"]["a"] == {"mean_iou": pytest.approx(2 / 3), "masks": 2}
    assert "b" not in q["per_class"] and q["unjudged"] == 1
    assert q["per_class"]["c"] == {"mean_iou": 0.0, "masks": 1}
    assert q["mean_iou"] == pytest.approx((1 / 3 + 1 + 0) / 3) and q["masks"] == 3
    # read with its instance map, the image's maskless object of class b has no pixels: it is
    # no instance, so b's mask is judged against none of its class, IoU 0 (not unjudged)
    gt["images"][0]["segmented"] = 1
    q = mask_quality(gt, predicted, ["a", "b", "c"])
    assert q["per_class"]["b"] == {"mean_iou": 0.0, "masks": 1} and q["unjudged"] == 0


def test_a_box_narrower_than_a_pixel_gets_the_pixels_it_touches() -> None:
    """A degenerate pseudo box (zero width, or on the image's edge) covers no pixel centre: its
    empty-mask fill is the pixel it touches, so the instance keeps a mask and a bbox."""
    # x from 4.2 to 4.2 (zero width) and y 1.0 to 1.4: pixel column 4, row 1
    assert cover_mask(np.array([4.2, 1.0, 4.2, 1.4]), 3, 6).astype(int).tolist() == [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    # clipped onto the right edge (x1 = x2 = width): the last column
    assert cover_mask(np.array([6.0, 0.0, 6.0, 2.0]), 3, 6)[:, 5].tolist() == [True, True, False]
    # a box that covers pixel centres is box_mask's
    box = np.array([1.0, 0.0, 3.0, 2.0])
    assert (cover_mask(box, 3, 4) == box_mask(box, 3, 4)).all()
    boxes = np.array([[0, 0, 10, 10], [12, 2, 20, 12], [29.6, 5, 30.4, 5.2]], dtype=np.float32)
    out = masks_for_boxes(StubSegmenter(), boxes, largest=True, clip_to_box=True, batch=2)  # type: ignore[arg-type]
    assert out.filled.tolist() == [False, False, True]
    assert out.masks[2].sum() == 1 and out.masks[2][5, 29]
