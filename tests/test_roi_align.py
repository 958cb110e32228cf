"""The separable RoIAlign gives torchvision's legacy RoIAlign values and gradients."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from weaksam.models.roi_align import (
    SeparableRoIAlign,
    interpolation_matrix,
    reference_roi_align,
    separable_roi_align,
)


def _ramp(height: int, width: int) -> torch.Tensor:
    """(1, 1, H, W) with value x at column x."""
    return torch.arange(width, dtype=torch.float32).repeat(height, 1)[None, None]


def test_hand_worked_bins_with_the_last_column_rule() -> None:
    # box [0, 0, 4, 4] at scale 1 on a 4 x 4 ramp, 2 x 2 bins, 2 x 2 samples: bin width 2,
    # samples at x = 0.5, 1.5 (bin 0) and 2.5, 3.5 (bin 1). Bilinear on a ramp gives x, except
    # that a sample at or past the last column (3.5 >= W - 1 = 3) reads column 3: 3.
    # bin 0: (0.5 + 1.5) / 2 = 1.0; bin 1: (2.5 + 3.0) / 2 = 2.75. Rows: the same per row.
    box = [torch.tensor([[0.0, 0.0, 4.0, 4.0]])]
    out = separable_roi_align(_ramp(4, 4), box, (2, 2), 1.0, 2)
    expected = torch.tensor([[[[1.0, 2.75], [1.0, 2.75]]]])
    assert torch.allclose(out, expected)
    assert torch.allclose(reference_roi_align(_ramp(4, 4), box, (2, 2), 1.0, 2), expected)


def test_hand_worked_samples_outside_count_as_zero() -> None:
    # box [-6, 0, -2, 4], one bin of 4 px, 2 samples per axis: x = -5 and -3, both < -1, so the
    # whole bin averages zeros although the map is all ones
    ones = torch.ones(1, 1, 4, 4)
    out = separable_roi_align(ones, [torch.tensor([[-6.0, 0.0, -2.0, 4.0]])], (1, 1), 1.0, 2)
    assert out.item() == 0.0
    # box [-2, 0, 2, 4]: x = -1 (inside [-1, W], clamped to 0: value 1) and x = 1 (1): 1.0;
    # box [-3, 0, 1, 4]: x = -2 (outside: 0) and x = 0 (1): (0 + 1) / 2 = 0.5
    out = separable_roi_align(
        ones, [torch.tensor([[-2.0, 0.0, 2.0, 4.0], [-3.0, 0.0, 1.0, 4.0]])], (1, 1), 1.0, 2
    )
    assert out.flatten().tolist() == [1.0, 0.5]


def test_interpolation_rows_sum_to_the_inside_fraction() -> None:
    # each sample's two taps sum to 1 / S when inside, 0 when outside
    m = interpolation_matrix(
        torch.tensor([0.0, -10.0]), torch.tensor([8.0, 4.0]), 8, bins=4, samples=2
    )
    assert torch.allclose(m[0].sum(1), torch.ones(4))
    assert torch.allclose(m[1].sum(1), torch.zeros(4))


def _random_boxes(n: int, size: float, generator: torch.Generator) -> torch.Tensor:
    """Boxes of every kind the heads see: inside, over the edges, outside, under one cell."""
    xy = torch.rand(n, 2, generator=generator) * (size + 40) - 20
    wh = torch.rand(n, 2, generator=generator) * size * 0.6
    wh[: n // 8] *= 0.01  # thinner than one feature cell
    return torch.cat((xy, xy + wh), dim=1)


@pytest.mark.parametrize("output_size", [(7, 7), (14, 14), (3, 5)])
def test_values_and_gradients_equal_torchvision(output_size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 21, 27, generator=g, requires_grad=True)
    boxes = [_random_boxes(40, 27 * 16, g), _random_boxes(0, 27 * 16, g)]
    boxes.append(_random_boxes(25, 27 * 16, g))
    feats3 = torch.randn(3, 16, 21, 27, generator=g, requires_grad=True)
    for f, b in ((feats, boxes[:2]), (feats3, boxes)):
        ours = separable_roi_align(f, b, output_size, 1 / 16, 2)
        ref = reference_roi_align(f, b, output_size, 1 / 16, 2)
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-5)
        grad = torch.randn(ref.shape, generator=g)
        (g_ours,) = torch.autograd.grad(ours, f, grad)
        (g_ref,) = torch.autograd.grad(ref, f, grad)
        assert torch.allclose(g_ours, g_ref, atol=1e-4)


def test_module_equals_torchvision_pooler_on_one_level_and_falls_back_on_several() -> None:
    g = torch.Generator().manual_seed(1)
    one = OrderedDict([("0", torch.randn(2, 8, 20, 24, generator=g))])
    boxes = [_random_boxes(30, 320, g), _random_boxes(12, 320, g)]
    shapes = [(320, 384), (300, 380)]
    ours = SeparableRoIAlign(["0"], output_size=7, sampling_ratio=2)
    ref = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    assert torch.allclose(ours(one, boxes, shapes), ref(one, boxes, shapes), atol=1e-5)
    assert ours.scales == ref.scales == [1 / 16]
    two = OrderedDict([("0", torch.randn(2, 8, 40, 48, generator=g)), ("1", one["0"])])
    ours2 = SeparableRoIAlign(["0", "1"], output_size=7, sampling_ratio=2)
    ref2 = MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=2)
    assert torch.equal(ours2(two, boxes, shapes), ref2(two, boxes, shapes))


def test_adaptive_sampling_ratio_is_refused() -> None:
    with pytest.raises(ValueError, match="sampling_ratio"):
        separable_roi_align(torch.zeros(1, 1, 4, 4), [torch.zeros(1, 4)], (2, 2), 1.0, 0)


def test_a_trace_keeps_the_number_of_rois_dynamic() -> None:
    # weaksam export traces the detector: the traced pooler must take any number of boxes
    pool = SeparableRoIAlign(["0"], output_size=7, sampling_ratio=2)
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(1, 8, 20, 24, generator=g)

    def run(f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return pool(OrderedDict([("0", f)]), [b], [(320, 384)])

    traced = torch.jit.trace(run, (feats, _random_boxes(10, 320, g)), check_trace=False)
    other = _random_boxes(17, 320, g)
    out = traced(feats, other)
    assert out.shape == (17, 8, 7, 7)
    assert torch.allclose(out, reference_roi_align(feats, [other], (7, 7), 1 / 16, 2), atol=1e-5)
