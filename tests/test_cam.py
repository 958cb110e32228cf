"""CAM extraction with a hand-built model whose CAM is known: the red channel."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from weaksam.cam.extract import min_max_normalise, multiscale_cams
from weaksam.cam.prompts import image_prompts
from weaksam.config import CamConfig, PromptsConfig
from weaksam.models.backbones import Backbone
from weaksam.models.classifier import CamClassifier


class RedChannel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]  # (B, 1, H, W): stride 1, one channel


def red_model() -> CamClassifier:
    """CAM of class 0 = red channel / 255; class 1 = minus that (killed by the ReLU)."""
    backbone = Backbone(
        RedChannel(), channels=1, stride=1, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)
    )
    model = CamClassifier(backbone, 2)
    with torch.no_grad():
        model.head.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        model.head.bias.zero_()
    return model.eval()


def image_with_square() -> torch.Tensor:
    img = torch.zeros(3, 40, 60)
    img[0, 10:20, 5:15] = 255.0  # bright red square on the left
    img[0, 30:35, 40:45] = 128.0  # dimmer patch on the right
    return img


def test_min_max_normalise_hand_worked() -> None:
    m = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    assert min_max_normalise(m).flatten().tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_flipped_pass_is_flipped_back() -> None:
    cfg = replace(CamConfig(), scales=(1.0,), flip=True)
    result = multiscale_cams(red_model(), image_with_square(), cfg, labels=[0])
    cam = result.cams[0]
    # Sum of the pass and the un-flipped flipped pass is twice the red channel; normalised that
    # is red / 255: 1 on the square, 128/255 on the patch, 0 elsewhere (not mirrored).
    assert cam.shape == (40, 60)
    assert cam[15, 10] == pytest.approx(1.0) and cam[32, 42] == pytest.approx(128 / 255, abs=1e-6)
    assert cam[15, 60 - 1 - 10] == pytest.approx(0.0)


def test_multiscale_output_is_image_sized_and_peaks_on_square() -> None:
    cfg = replace(CamConfig(), scales=(1.0, 0.8, 1.2), flip=True)
    result = multiscale_cams(red_model(), image_with_square(), cfg, labels=[0])
    assert result.cams.shape == (1, 40, 60) and result.cams.max() == pytest.approx(1.0)
    y, x = np.unravel_index(result.cams[0].argmax(), (40, 60))
    assert 10 <= y < 20 and 5 <= x < 15


def test_classes_from_labels_on_train_and_from_classifier_on_test() -> None:
    cfg = replace(CamConfig(), scales=(1.0,), flip=False, test_class_threshold=0.5)
    model = red_model()
    train = multiscale_cams(model, image_with_square(), cfg, labels=[1, 0])
    assert train.class_ids.tolist() == [0, 1]  # the labels, whatever the classifier says
    assert train.cams[1].max() == 0.0  # class 1's map is all zero after the ReLU
    test = multiscale_cams(model, image_with_square(), cfg, labels=None)
    # mean logit of class 0 is positive (sigmoid > 0.5), of class 1 negative: only 0 is kept
    assert test.class_ids.tolist() == [0]
    assert test.scores[0] > 0.5 > test.scores[1]
    # A black image gives logit 0 (probability 0.5) for both: below a 0.6 threshold, no class.
    empty = multiscale_cams(
        model, torch.zeros(3, 40, 60), replace(cfg, test_class_threshold=0.6), labels=None
    )
    assert empty.class_ids.tolist() == [] and empty.cams.shape == (0, 40, 60)


def test_image_prompts_from_cams() -> None:
    cams = np.zeros((1, 40, 60), np.float32)
    cams[0, 10, 20] = 1.0
    cams[0, 30, 50] = 0.95
    df = image_prompts(
        "im", cams, np.array([3]), 60, 40, PromptsConfig(peak_kernel=17, points_per_side=2)
    )
    peaks = df[df["source"] == "peak"]
    assert peaks[["x", "y", "class_id"]].values.tolist() == [[20, 10, 3], [50, 30, 3]]
    grid = df[df["source"] == "grid"]
    assert grid[["x", "y"]].values.tolist() == [[15, 10], [45, 10], [15, 30], [45, 30]]
    assert (grid["class_id"] == -1).all() and grid["score"].isna().all()


def test_border_padding_is_cropped_back_exactly() -> None:
    # The red-channel model is pixel-wise, so reflection padding must not change its CAM.
    model = red_model()
    img = image_with_square()
    plain = multiscale_cams(
        model, img, replace(CamConfig(), scales=(1.0,), border_pad=0), labels=[0]
    )
    padded = multiscale_cams(
        model, img, replace(CamConfig(), scales=(1.0,), border_pad=8), labels=[0]
    )
    assert np.allclose(plain.cams, padded.cams, atol=1e-6)


class _OneCell:
    """A stride-16 "classifier" whose CAM is 1 at cell (20, 20) of a ceil(H / 16) grid (as
    EfficientNet-Lite0's "same" padding gives) and 0 elsewhere."""

    backbone = type("B", (), {"stride": 16})()

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        n, m = -(-x.shape[-2] // 16), -(-x.shape[-1] // 16)
        out = torch.zeros(x.shape[0], 1, n, m)
        out[..., 20, 20] = 1.0
        return out


def test_cell_alignment_places_a_cell_on_its_patch_centre() -> None:
    """307 px image, 32 px reflection padding: 371 px in, 24 cells (ceil(371 / 16)).
    "stride": cell 20 at 16 * 20 + 7.5 = 327.5 in the padded input, 295.5 in the image (pixels
    295 and 296 tie). "stretch": at 20.5 * 371 / 24 - 0.5 = 316.4 padded, 284.4 in the image,
    11 px towards the top left."""
    from weaksam.cam.extract import _padded_cams, cells_to_pixels

    batch = torch.zeros(1, 3, 307, 307)
    stride = _padded_cams(_OneCell(), batch, 32, "stride")[0, 0]  # type: ignore[arg-type]
    stretch = _padded_cams(_OneCell(), batch, 32, "stretch")[0, 0]  # type: ignore[arg-type]
    assert stride.shape == stretch.shape == (307, 307)
    assert divmod(int(stride.argmax()), 307) == (295, 295)  # the first of the four tied
    assert stride[295, 295] == stride[296, 296] == stride[295, 296]
    assert divmod(int(stretch.argmax()), 307) == (284, 284)
    # floor-sized grids (VGG: 3 cells for 50 px) are extended by their edge cells
    cells = torch.tensor([[[[0.0, 1.0, 2.0]]]])
    row = cells_to_pixels(cells, 1, 50, 16)[0, 0, 0]
    # pixel i samples cell (i + 0.5) / 16 - 0.5: cell 1 lies between pixels 23 and 24
    assert row[:8].tolist() == [0.0] * 8 and row[40:].tolist() == [2.0] * 10
    assert row[23].item() == pytest.approx(1 - 1 / 32) and row[24].item() == pytest.approx(
        1 + 1 / 32
    )
    assert row[15].item() == pytest.approx(15.5 / 16 - 0.5)
