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
    # k = 17, so the suppression distance is (17 - 1) / 2 = 8.
    # Equal peaks at (row 10, col 10) and (row 10, col 14): both equal their window maximum, so
    # both are candidates; the second is at L1 distance 4 < 8 from the first and is suppressed.
    m = np.zeros((40, 40), np.float32)
    m[10, 10] = m[10, 14] = 1.0
    assert peak_points(m, kernel=17)[0].tolist() == [[10, 10]]
    # A lower value at the same place is not even a local maximum (inside the first's window).
    m[10, 14] = 0.95
    assert not local_maxima(torch.from_numpy(m), 17)[10, 14]
    assert peak_points(m, kernel=17)[0].tolist() == [[10, 10]]
    # Distance exactly 8 is kept (the rule is >=): equal peaks at columns 10 and 18.
    m2 = np.zeros((40, 40), np.float32)
    m2[10, 10] = m2[10, 18] = 1.0
    assert peak_points(m2, kernel=17)[0].tolist() == [[10, 10], [18, 10]]
    # L1 counts both axes: (10, 10) and (14, 15) are 4 + 5 = 9 >= 8 apart (kept), while
    # (10, 10) and (13, 14) are 3 + 4 = 7 < 8 apart (suppressed).
    m3 = np.zeros((40, 40), np.float32)
    m3[10, 10] = m3[14, 15] = 1.0
    assert len(peak_points(m3, kernel=17)[0]) == 2
    m4 = np.zeros((40, 40), np.float32)
    m4[10, 10] = m4[13, 14] = 1.0
    assert len(peak_points(m4, kernel=17)[0]) == 1


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
