"""RoIAlign as two small matrix products, for the CPU detectors' single small feature map.

torchvision's CPU ``roi_align`` is a scalar loop per output value, and its backward scatters one
sample at a time: on the embedded detector (stride-16 features of 320-448 px images, 128 RoIs
per image) the backward alone took 30 % of a training step (``bench/bench_roi_align.py``).

RoIAlign with a fixed ``sampling_ratio`` is linear in the features and separable in y and x:
every output bin averages ``S x S`` bilinear samples, and a bilinear weight is a y weight times an
x weight. So, per RoI ``r``, ``out[r, c] = Ay[r] @ F[c] @ Ax[r]^T`` with ``Ay[r]`` (P, H) and
``Ax[r]`` (Q, W) the interpolation matrices (each row sums the S samples' two-tap weights of one
bin, divided by S). Forward and backward are then dense matrix products, which autograd handles.

Same values as torchvision's legacy (``aligned=False``) kernel, including its edge rules: a
sample outside ``[-1, size]`` contributes 0 (and still counts in the average), coordinates below 0
are clamped to 0, and a sample at or past the last row reads the last row only. The cost grows
with ``C * H * W * R * P``, so this is for small maps (one stride-16 level on CPU); elsewhere
``SeparableRoIAlign`` calls torchvision's kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align

# Above this many multiply-adds per image for the first product (C * H * W * R * P), the
# separable form loses to torchvision's kernel on CPU (bench/bench_roi_align.py).
MAX_SEPARABLE_MACS = 2_000_000_000


def interpolation_matrix(
    start: Tensor, extent: Tensor, length: int, bins: int, samples: int
) -> Tensor:
    """(R, bins, length) weights along one axis: row ``p`` of RoI ``r`` holds the bilinear weights
    of the ``samples`` sample points of bin ``p``, each divided by ``samples``.

    ``start`` and ``extent`` (R,) are the RoIs' first coordinate and size on the feature map (the
    size already raised to at least 1, as torchvision's legacy kernel does)."""
    bin_size = extent / bins
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    s = torch.arange(samples, dtype=start.dtype, device=start.device) + 0.5
    # the kernel's order of operations: start + p * bin + (s + 0.5) * bin / S
    coord = (
        start[:, None, None]
        + p[None, :, None] * bin_size[:, None, None]
        + s[None, None, :] * bin_size[:, None, None] / samples
    )
    valid = (coord >= -1.0) & (coord <= length)
    coord = coord.clamp(min=0.0)
    low = coord.floor().long()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    coord = torch.where(at_end, low.to(coord.dtype), coord)
    frac = coord - low.to(coord.dtype)
    weight_low = (1.0 - frac) * valid / samples
    weight_high = frac * valid / samples
    out = torch.zeros(start.shape[0], bins, length, dtype=start.dtype, device=start.device)
    out.scatter_add_(2, torch.cat((low, high), dim=2), torch.cat((weight_low, weight_high), dim=2))
    return out


def separable_roi_align(
    features: Tensor,
    boxes: list[Tensor],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
) -> Tensor:
    """torchvision's ``roi_align(features, boxes, output_size, spatial_scale, sampling_ratio,
    aligned=False)`` for ``sampling_ratio > 0``: (sum of boxes, C, P, Q), differentiable in
    ``features``. ``boxes``: one (R_i, 4) XYXY tensor per image, in image coordinates."""
    if sampling_ratio <= 0:
        raise ValueError("separable_roi_align needs a fixed sampling_ratio > 0")
    _, channels, height, width = features.shape
    p_out, q_out = output_size
    outs = []
    for image, rois in enumerate(boxes):
        r = rois.shape[0]
        if r == 0:
            outs.append(features.new_zeros(0, channels, p_out, q_out))
            continue
        scaled = rois.to(features.dtype) * spatial_scale
        x1, y1, x2, y2 = scaled.unbind(1)
        ay = interpolation_matrix(y1, (y2 - y1).clamp(min=1.0), height, p_out, sampling_ratio)
        ax = interpolation_matrix(x1, (x2 - x1).clamp(min=1.0), width, q_out, sampling_ratio)
        # y first: (R*P, H) @ (H, C*W) -> (R, P*C, W), already laid out for the batched x product
        rows = ay.reshape(r * p_out, height) @ features[image].transpose(0, 1).reshape(
            height, channels * width
        )
        # then x: (R, P*C, W) @ (R, W, Q) -> (R, P, C, Q)
        o = torch.bmm(rows.reshape(r, p_out * channels, width), ax.transpose(1, 2))
        outs.append(o.reshape(r, p_out, channels, q_out).permute(0, 2, 1, 3))
    return torch.cat(outs).contiguous()


class SeparableRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same arguments, same output, no parameters) that pools
    one feature level on CPU with ``separable_roi_align``; several levels, other devices, an
    adaptive sampling ratio, a map too large for the matrix form and traces (export) go to
    torchvision's kernel."""

    def forward(
        self,
        x: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> Tensor:
        names = [k for k in x if k in self.featmap_names]
        if len(names) != 1 or self.sampling_ratio <= 0:
            return super().forward(x, boxes, image_shapes)
        feature = x[names[0]]
        if self.scales is None or self.map_levels is None:
            # sets the scale as torchvision infers it (pooling no boxes)
            super().forward(x, [b[:0] for b in boxes], image_shapes)
        assert self.scales is not None
        _, c, h, w = feature.shape
        largest = max((b.shape[0] for b in boxes), default=0)
        macs = c * h * w * largest * int(self.output_size[0])
        # a trace (weaksam export) would record the number of RoIs as a constant: torchvision's
        # kernel there, which the traced graph and ONNX keep dynamic
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if tracing or feature.device.type != "cpu" or macs > MAX_SEPARABLE_MACS:
            return super().forward(x, boxes, image_shapes)
        size = (int(self.output_size[0]), int(self.output_size[1]))
        return separable_roi_align(feature, boxes, size, self.scales[0], self.sampling_ratio)


def reference_roi_align(
    features: Tensor,
    boxes: list[Tensor],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
) -> Tensor:
    """torchvision's kernel with the same arguments (for tests and benchmarks)."""
    return roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned=False)
