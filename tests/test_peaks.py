"""Peak points (METHOD.md section 3) on hand-made maps, and the spatial grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weaksam.cam.peaks import grid_points, local_maxima, peak_points


def test_single_peak() -> None:
    m = np.zeros((20, 30), np.float32)
    m[5, 7] = 1.0
    m[5, 8] = 0.5
    pts, scores = peak_points(m, kernel=3)
    assert pts.tolist() == [[7, 5]] and scores.tolist() == [1.0]  # (x, y) = (column, row)


def test_plateau_gives_one_point() -> None:
    # A 3x3 plateau of 1.0: all 9 pixels equal their neighbourhood max, so all are candidates.
    # Row-major order puts (row 4, col 4) first; the other 8 lie at L1 distance <= 4 < 8 = (17-1)/2.
    m = np.zeros((40, 40), np.float32)
    m[4:7, 4:7] = 1.0
    pts, scores = peak_points(m, kernel=17)
    assert pts.tolist() == [[4, 4]] and scores.tolist() == [1.0]


def test_two_peaks_closer_than_half_window() -> None:
    # Peaks at (row 10, col 10) = 1.0 and (row 10, col 16) = 0.95: L1 distance 6 < 8.
    # With k = 17 the second is not even a local maximum (inside the first's window);
    # with k = 5 it is a local maximum but L1 suppression at (5-1)/2 = 2 keeps it (6 >= 2).
    m = np.zeros((40, 40), np.float32)
    m[10, 10], m[10, 16] = 1.0, 0.95
    assert peak_points(m, kernel=17)[0].tolist() == [[10, 10]]
    assert peak_points(m, kernel=5)[0].tolist() == [[10, 10], [16, 10]]
    # Both local maxima (window 13 cannot see 7 columns apart... it can: 6 <= 6), so use k = 11:
    # window radius 5 < 6, both are maxima, and L1 suppression at (11-1)/2 = 5 keeps both (6 >= 5);
    # at k = 13 the second is inside the window of the first and drops at the max-pool step.
    assert peak_points(m, kernel=11)[0].tolist() == [[10, 10], [16, 10]]
    assert peak_points(m, kernel=13)[0].tolist() == [[10, 10]]


def test_suppression_by_l1_distance() -> None:
    # Local maxima in a 3x3 window at L1 distance 2 (diagonal neighbours two apart) survive the
    # max-pool but fall to L1 suppression at (7-1)/2 = 3 when k = 7 cannot see them... build it
    # directly: k = 3, suppression distance 1 keeps everything; the rule is distance >= (k-1)/2.
    m = np.zeros((10, 10), np.float32)
    m[2, 2], m[3, 3] = 1.0, 0.99  # diagonal: neither is in the other's 3x3 window? it is.
    assert local_maxima(torch.from_numpy(m), 3)[3, 3].item() is False
    m2 = np.zeros((10, 10), np.float32)
    m2[2, 2], m2[2, 4] = 1.0, 0.99  # two apart: both 3x3 maxima, L1 distance 2 >= 1
    assert peak_points(m2, kernel=3)[0].tolist() == [[2, 2], [4, 2]]


def test_second_peak_below_threshold_is_dropped() -> None:
    m = np.zeros((50, 50), np.float32)
    m[5, 5], m[40, 40], m[20, 20] = 1.0, 0.89, 0.95
    pts, scores = peak_points(m, kernel=17)
    # Descending: 1.0, 0.95, 0.89; the walk stops at 0.89 < 0.90.
    assert pts.tolist() == [[5, 5], [20, 20]]
    assert scores.tolist() == pytest.approx([1.0, 0.95])


def test_stop_is_a_stop_not_a_filter() -> None:
    # After 0.89 nothing is kept even if a later value were above the threshold; values are
    # descending so that cannot happen, and exactly 0.90 is kept.
    m = np.zeros((50, 50), np.float32)
    m[5, 5], m[40, 40] = 1.0, 0.9
    assert len(peak_points(m, kernel=17)[0]) == 2


def test_all_zero_map_has_no_points() -> None:
    pts, scores = peak_points(np.zeros((16, 16), np.float32), kernel=17)
    assert pts.shape == (0, 2) and scores.shape == (0,)


def test_top_k_limits_candidates() -> None:
    # 30 isolated peaks at 1.0 (far apart): only the first 25 in row-major order survive.
    m = np.zeros((60, 100), np.float32)
    coords = [(r, c) for r in range(2, 60, 10) for c in range(2, 100, 20)]  # 6 x 5 = 30
    for r, c in coords:
        m[r, c] = 1.0
    pts, _ = peak_points(m, kernel=3, top_k=25)
    assert len(pts) == 25
    assert pts.tolist() == [[c, r] for r, c in coords[:25]]


def test_even_kernel_is_rejected() -> None:
    with pytest.raises(ValueError, match="odd"):
        peak_points(np.ones((4, 4), np.float32), kernel=4)


def test_grid_points_are_cell_centres() -> None:
    g = grid_points(100, 50, 2)
    # cells of 50 x 25 pixels: centres at x 25, 75 and y 12.5, 37.5, row by row
    assert g.tolist() == [[25.0, 12.5], [75.0, 12.5], [25.0, 37.5], [75.0, 37.5]]
