"""One promptable-segmenter interface: embed an image once, decode batches of prompts.

Prompts are in pixels of the original image (x, y) = (column, row); boxes XYXY. ``decode`` returns
the decoder's 4 outputs per prompt: index 0 is the single-mask token, 1..3 SAM's 3-way multimask
output. ``masks_to_boxes`` upsamples low-resolution logits to the original image on the device
(in chunks, as two matmuls per mask), thresholds them at 0 and returns x2-exclusive boxes,
without numpy in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder
from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

from weaksam.sam.encoders import SAM_INPUT, ImageEncoder

LOW_RES = 256  # side of the mask decoder's logits

DecoderPrecision = Literal["fp32", "tf32", "bf16"]


class PointDecoder(Protocol):
    """A decoder of point-only prompts: the (1, 256, 64, 64) embedding, (B, N, 2) points in the
    1024 frame and (B, N) labels -> low-res logits (B, 4, 256, 256) and predicted IoU (B, 4).
    ``OnnxPointDecoder`` on the CPU, ``FactoredPointDecoder.decode`` on a GPU."""

    def __call__(
        self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, /
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@contextmanager
def decoder_precision(device: torch.device, precision: DecoderPrecision) -> Iterator[None]:
    """The arithmetic of the mask decoder on ``device``: ``fp32``; ``tf32``, fp32 matrix products
    on a CUDA GPU's tensor cores with TF32 inputs (torch's float32 matmul precision ``high``,
    restored after; cuDNN's convolutions already use TF32 by torch's default); ``bf16``, autocast.
    Only a CUDA device has the last two; elsewhere they are refused."""
    if precision == "fp32":
        yield
        return
    if device.type != "cuda":
        raise ValueError(f"decoder precision {precision} needs a CUDA device, not {device.type}")
    if precision == "bf16":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


class PromptError(ValueError):
    """A prompt is malformed or outside the image."""


@dataclass(frozen=True)
class Decoded:
    """Decoder output for B prompts: low-res logits (B, 4, 256, 256) and predicted IoU (B, 4)."""

    low_res: torch.Tensor
    iou: torch.Tensor


@dataclass(frozen=True)
class MaskBoxes:
    """Per mask: XYXY box (x2 / y2 exclusive, original pixels), area in pixels, stability score.
    Empty masks have a zero box and zero area."""

    boxes: torch.Tensor  # (K, 4) float32
    areas: torch.Tensor  # (K,) int64
    stability: torch.Tensor  # (K,) float32


class Segmenter(Protocol):
    """What the proposal stage needs of a promptable segmenter: ``PromptableSegmenter``, or a
    stand-in with the same methods (the tests' decoders with known outputs)."""

    device: torch.device

    def set_image(self, image: np.ndarray) -> None: ...

    def decode(
        self,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
    ) -> Decoded: ...

    def masks_to_boxes(
        self, low_res: torch.Tensor, *, stability_offset: float = 1.0
    ) -> MaskBoxes: ...

    def mask_boxes(self, low_res: torch.Tensor) -> torch.Tensor: ...


class PromptableSegmenter:
    def __init__(
        self,
        encoder: ImageEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        device: torch.device,
        *,
        mask_chunk: int = 16,
        point_decoder: PointDecoder | None = None,
        precision: DecoderPrecision = "fp32",
        compile_postprocess: bool = False,
    ) -> None:
        self.encoder = encoder
        self.prompt_encoder = prompt_encoder.to(device).eval()
        self.mask_decoder = mask_decoder.to(device).eval()
        self.device = device
        self.mask_chunk = mask_chunk
        self.point_decoder = point_decoder  # the fast path for point-only prompts
        if precision != "fp32" and device.type != "cuda":
            raise ValueError(f"decoder precision {precision} needs a CUDA device")
        self.precision: DecoderPrecision = precision
        self.features: torch.Tensor | None = None
        self.original_size = (0, 0)
        self.input_size = (0, 0)
        self.dense_pe = self.prompt_encoder.get_dense_pe().to(device)  # (1, 256, 64, 64)
        self._resize_key: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._resize = (torch.zeros(0), torch.zeros(0))
        self._support: tuple[_Support, _Support] | None = None
        # one chunk's upsampling, thresholding, boxes, areas and stability scores; under
        # torch.compile (``sam.gpu_compile``) its dozen passes over the chunk's full-size
        # logits are fused (dynamic shapes: chunk length and image size vary)
        self._chunk_boxes: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = (
            torch.compile(chunk_mask_boxes, dynamic=True)
            if compile_postprocess
            else chunk_mask_boxes
        )

    @property
    def name(self) -> str:
        return self.encoder.name

    def set_image(self, image: np.ndarray) -> None:
        """Embed one (H, W, 3) uint8 RGB image; later prompts refer to it."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        self.features, self.input_size = self.encoder(image)
        self.original_size = (int(image.shape[0]), int(image.shape[1]))

    def _to_input_frame(self, xy: torch.Tensor) -> torch.Tensor:
        """(..., 2k) x, y pairs in original pixels -> SAM's 1024 frame, on the device: scaled
        where they are, then copied without waiting (``.to`` a GPU from host memory otherwise
        waits for every kernel already queued, once per batch of prompts)."""
        h, w = self.original_size
        nh, nw = self.input_size
        scale = torch.tensor([nw / w, nh / h], device=xy.device).repeat(xy.shape[-1] // 2)
        return (xy.float() * scale).to(self.device, non_blocking=True)

    def check_points(self, points: torch.Tensor) -> None:
        h, w = self.original_size
        outside = (
            (points[..., 0] < 0)
            | (points[..., 0] > w)
            | (points[..., 1] < 0)
            | (points[..., 1] > h)
        )
        if bool(outside.any()):
            bad = points[outside][0].tolist()
            raise PromptError(f"prompt point {bad} lies outside the {w}x{h} image")

    def _no_prompts(self) -> Decoded:
        """The decoder's output for a batch of zero prompts."""
        return Decoded(
            torch.zeros(0, 4, LOW_RES, LOW_RES, device=self.device),
            torch.zeros(0, 4, device=self.device),
        )

    @torch.no_grad()
    def decode(
        self,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
    ) -> Decoded:
        """Decode B prompts at once.

        points: (B, N, 2) float (x, y) in original pixels; labels: (B, N) int (1 positive,
        0 negative, -1 padding); boxes: (B, 4) XYXY in original pixels. Returns ``Decoded``.
        """
        if self.features is None:
            raise RuntimeError("set_image must be called before decode")
        if points is None and boxes is None:
            raise PromptError("a prompt needs points or a box")
        sparse_points = None
        if points is not None:
            if labels is None or labels.shape != points.shape[:2]:
                raise PromptError(f"labels must have shape {tuple(points.shape[:2])}")
            if points.shape[0] == 0:
                return self._no_prompts()
            valid = labels >= 0
            self.check_points(points[valid])
            coords = self._to_input_frame(points)  # (B, N, 2) in the 1024 frame
            sparse_points = (coords, labels.to(self.device, non_blocking=True))
        box_in = None
        if boxes is not None:
            if boxes.shape[0] == 0:
                return self._no_prompts()
            self.check_points(boxes.view(-1, 2, 2))
            box_in = self._to_input_frame(boxes)  # (B, 4)
        # The decoder runs in fp32 (``precision``) even where the encoder runs in bf16: bf16
        # rounding of its logits and predicted IoUs changes which masks pass SAM's thresholds
        with decoder_precision(self.device, self.precision):
            if self.point_decoder is not None and sparse_points is not None and box_in is None:
                low_res, iou = self.point_decoder(self.features, *sparse_points)
            else:
                sparse, dense = self.prompt_encoder(points=sparse_points, boxes=box_in, masks=None)
                low_res, iou = self.mask_decoder.predict_masks(
                    self.features, self.dense_pe, sparse, dense
                )
        return Decoded(low_res.to(self.device).float(), iou.to(self.device).float())

    def _resize_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's postprocessing of low-res logits as two matrices, rows (H, 256) and columns
        (W, 256), so that ``rows @ logits @ cols.T`` is the (H, W) logit map.

        SAM upsamples the 256 x 256 logits bilinearly to 1024 x 1024, crops the padding to the
        resized image and resizes that bilinearly to the original size. Bilinear interpolation
        is separable and linear, so each axis is one matrix: the interpolation applied to the
        identity, composed over the two steps. Two small matmuls per mask instead of filling
        1024 x 1024 pixels (the same logits up to float rounding; tests/test_sam.py)."""
        key = (self.original_size, self.input_size)
        if self._resize_key != key:
            h, w = self.original_size
            nh, nw = self.input_size
            self._resize = (_axis_matrix(nh, h, self.device), _axis_matrix(nw, w, self.device))
            self._support = (_support(self._resize[0]), _support(self._resize[1]))
            self._resize_key = key
        return self._resize

    def _upsample(self, chunk: torch.Tensor) -> torch.Tensor:
        """(k, 256, 256) low-res logits -> (k, H, W) logits at the original size."""
        rows, cols = self._resize_matrices()
        return upsample_logits(rows, chunk, cols)

    @torch.no_grad()
    def mask_boxes(self, low_res: torch.Tensor) -> torch.Tensor:
        """(K, 256, 256) logits -> (K, 4) x2-exclusive boxes of the masks (logits > 0) at the
        original size, zeros for an empty mask: ``masks_to_boxes``' boxes without areas or
        stability scores, found without upsampling whole masks (the point prompts need no more).

        Each upsampled logit is a weighted mean (non-negative weights) of a few low-res logits,
        so it can be > 0 only where one of those is: a mask lies inside the window of pixels
        whose weights touch its positive low-res rows and columns. Inside the window the box's
        edges are searched in bands of rows (from the top, then the bottom) and of columns
        (between those rows), each band upsampled through the same matrices as
        ``_upsample``: the same logits up to float summation order, so the same boxes except
        where a pixel's logit is within rounding of 0 (then an edge can move by a pixel).

        The search syncs with the host a few times per mask: off the CPU the whole masks'
        batched path (``masks_to_boxes``) is taken instead.
        """
        if self.device.type != "cpu":
            return self.masks_to_boxes(low_res).boxes
        rows, cols = self._resize_matrices()
        assert self._support is not None
        row_support, col_support = self._support
        boxes = torch.zeros(low_res.shape[0], 4, device=self.device)
        positive = low_res > 0
        any_row = positive.any(2).cpu()  # (K, 256)
        any_col = positive.any(1).cpu()
        for i in range(low_res.shape[0]):
            r = torch.nonzero(any_row[i]).flatten()
            if r.numel() == 0:
                continue  # no positive logit: an empty mask
            c = torch.nonzero(any_col[i]).flatten()
            row_window = _window(row_support, int(r[0]), int(r[-1]))
            col_window = _window(col_support, int(c[0]), int(c[-1]))
            if row_window is None or col_window is None:
                continue  # positive only in the padding, which is cropped away
            y0, y1, r0, r1 = row_window
            x0, x1, c0, c1 = col_window
            edges = _window_box(
                rows[y0:y1, r0:r1], low_res[i, r0:r1, c0:c1].float(), cols[x0:x1, c0:c1]
            )
            if edges is None:
                continue  # every upsampled logit <= 0
            left, top, right, bottom = edges
            boxes[i] = torch.tensor(
                [x0 + left, y0 + top, x0 + right + 1, y0 + bottom + 1], dtype=torch.float32
            )
        return boxes

    @torch.no_grad()
    def full_masks(self, low_res: torch.Tensor) -> torch.Tensor:
        """(K, 256, 256) logits -> (K, H, W) bool masks at the original size (logits > 0), by
        SAM's postprocessing, in chunks of ``mask_chunk``."""
        h, w = self.original_size
        out = [
            self._upsample(low_res[start : start + self.mask_chunk]) > 0.0
            for start in range(0, low_res.shape[0], self.mask_chunk)
        ]
        if not out:
            return torch.zeros(0, h, w, dtype=torch.bool, device=self.device)
        return torch.cat(out)

    @torch.no_grad()
    def masks_to_boxes(self, low_res: torch.Tensor, *, stability_offset: float = 1.0) -> MaskBoxes:
        """(K, 256, 256) logits -> boxes, areas and stability scores of the masks at full size.

        As SAM's postprocessing (upsample to 1024, crop the padding, resize to the original
        size, threshold at 0), in chunks of ``mask_chunk`` masks to bound memory.
        """
        rows, cols = self._resize_matrices()
        boxes, areas, stability = [], [], []
        for start in range(0, low_res.shape[0], self.mask_chunk):
            chunk = low_res[start : start + self.mask_chunk]
            b, a, s = self._chunk_boxes(rows, chunk, cols, stability_offset)
            boxes.append(b)
            areas.append(a)
            stability.append(s)
        if not boxes:
            z = torch.zeros(0, device=self.device)
            return MaskBoxes(z.view(0, 4), z.long(), z)
        return MaskBoxes(torch.cat(boxes), torch.cat(areas), torch.cat(stability))


def upsample_logits(rows: torch.Tensor, low_res: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(k, 256, 256) logits -> (k, H, W) at the original size through the resize matrices (rows
    (H, 256), columns (W, 256); ``PromptableSegmenter._resize_matrices``)."""
    return rows @ low_res.float() @ cols.T


def chunk_mask_boxes(
    rows: torch.Tensor, low_res: torch.Tensor, cols: torch.Tensor, stability_offset: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k, 256, 256) logits upsampled to the original size through the resize matrices (rows
    (H, 256), columns (W, 256); ``_resize_matrices``) and thresholded at 0 -> x2-exclusive
    boxes (k, 4) (zeros for an empty mask), areas (k,) and SAM's stability scores (k,)."""
    up = upsample_logits(rows, low_res, cols)  # (k, H, W)
    masks = up > 0.0
    boxes = batched_mask_to_box(masks).float()  # inclusive XYXY, zeros when empty
    areas = masks.flatten(1).sum(1)
    boxes[:, 2:] += (areas > 0).float()[:, None]  # x2 / y2 exclusive for non-empty masks
    return boxes, areas, calculate_stability_score(up, 0.0, stability_offset).float()


class _Support(NamedTuple):
    """Per output pixel of one axis of ``_resize_matrices``: the first and last low-res index
    with a non-zero weight (``lo``, ``hi``, both (n,) int64, non-decreasing)."""

    lo: torch.Tensor
    hi: torch.Tensor


def _support(matrix: torch.Tensor) -> _Support:
    nonzero = matrix != 0
    idx = torch.arange(matrix.shape[1], device=matrix.device)
    big = matrix.shape[1]
    lo = torch.where(nonzero, idx, big).min(1).values
    hi = torch.where(nonzero, idx, -1).max(1).values
    return _Support(lo.cpu(), hi.cpu())


def _window(support: _Support, first: int, last: int) -> tuple[int, int, int, int] | None:
    """Output pixels [o0, o1) whose weights touch low-res indices first..last, and the low-res
    range [i0, i1) those pixels read; None when no pixel does (indices in the padding)."""
    o0 = int(torch.searchsorted(support.hi, first))  # first pixel with hi >= first
    o1 = int(torch.searchsorted(support.lo, last, right=True))  # pixels with lo <= last
    if o1 <= o0:
        return None
    return o0, o1, int(support.lo[o0]), int(support.hi[o1 - 1]) + 1


def _window_box(
    rows: torch.Tensor, logits: torch.Tensor, cols: torch.Tensor
) -> tuple[int, int, int, int] | None:
    """Inclusive (left, top, right, bottom) of ``rows @ logits @ cols.T > 0`` without forming it
    whole: the first and last rows with a positive pixel, searched in bands, then the first and
    last columns between them. None when no pixel is positive.

    Bands of different sizes (and the columns' cheaper association, ``rows @ (logits @ cols.T)``)
    round differently, so a pixel within rounding of 0 may be positive in one search and not in
    another: then the whole window decides (rare; the box can differ from ``_upsample``'s by a
    pixel only at such a pixel)."""

    def row_band(start: int, stop: int) -> torch.Tensor:
        return ((rows[start:stop] @ logits @ cols.T) > 0).any(1)

    top = _first_hit(row_band, rows.shape[0], reverse=False)
    if top is None:
        return None
    bottom = _first_hit(row_band, rows.shape[0], reverse=True)
    if bottom is None or bottom < top:
        bottom = top
    inside = rows[top : bottom + 1]

    def col_band(start: int, stop: int) -> torch.Tensor:
        return ((inside @ (logits @ cols[start:stop].T)) > 0).any(0)

    left = _first_hit(col_band, cols.shape[0], reverse=False)
    right = _first_hit(col_band, cols.shape[0], reverse=True)
    if left is None or right is None or right < left:
        mask = (rows @ logits @ cols.T) > 0  # the searches disagree at a pixel near 0
        if not bool(mask.any()):
            return None
        x0, y0, x1, y1 = (int(v) for v in batched_mask_to_box(mask[None])[0])
        return x0, y0, x1, y1
    return left, top, right, bottom


def _first_hit(
    band: Callable[[int, int], torch.Tensor], n: int, *, reverse: bool, size: int = 8
) -> int | None:
    """The first (or, ``reverse``, the last) index in [0, n) where ``band(start, stop)``, a
    (stop - start,) bool tensor, is true; bands of ``size`` indices, doubling as the search goes
    on. None when it is true nowhere."""
    done = 0
    while done < n:
        start, stop = (n - done - size, n - done) if reverse else (done, done + size)
        start, stop = max(start, 0), min(stop, n)
        hits = torch.nonzero(band(start, stop)).flatten()
        if hits.numel():
            return start + int(hits[-1] if reverse else hits[0])
        done += stop - start
        size *= 2
    return None


def _axis_matrix(resized: int, original: int, device: torch.device) -> torch.Tensor:
    """(original, 256): one axis of SAM's postprocessing, bilinear 256 -> 1024, keep the first
    ``resized`` samples (the image; the rest is padding), bilinear ``resized`` -> ``original``."""
    eye = torch.eye(LOW_RES, device=device)[None]  # each channel one unit impulse
    to_input = F.interpolate(eye, SAM_INPUT, mode="linear", align_corners=False)[0]  # (256, 1024)
    crop = torch.eye(resized, device=device)[None]
    to_original = F.interpolate(crop, original, mode="linear", align_corners=False)[0]
    return (to_input[:, :resized] @ to_original).T.contiguous()  # (original, 256)
