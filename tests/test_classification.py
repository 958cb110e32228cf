from __future__ import annotations

import math

import numpy as np
import pytest

from weaksam.evaluation.classification import average_precision, multilabel_map


def test_average_precision_hand_worked() -> None:
    # Ranked: pos, neg, pos, neg -> precision at the hits: 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(scores, np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(scores, np.array([1, 1, 0, 0])) == 1.0
    assert math.isnan(average_precision(scores, np.zeros(4)))
    # Ties keep input order: the positive listed second ranks second.
    assert average_precision(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_multilabel_map_skips_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4]])
    labels = np.array([[1, 0, 0], [0, 0, 0]], dtype=bool)
    res = multilabel_map(scores, labels, ["a", "b", "c"])
    assert res["map"] == 1.0 and math.isnan(res["per_class"]["b"])  # type: ignore[index]
