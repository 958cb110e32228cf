from __future__ import annotations

import pandas as pd
import pytest

from weaksam.evaluation.cocofiles import ground_truth_from_dict
from weaksam.evaluation.pointing import pointing_accuracy


def test_pointing_accuracy_hand_worked() -> None:
    gt = ground_truth_from_dict(
        {
            "images": [{"id": 7, "width": 50, "height": 50}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10]}],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        }
    )
    prompts = pd.DataFrame(
        {
            "image_id": ["im"] * 5,
            "x": [2.0, 20.0, 2.0, 9.0, 5.0],
            "y": [2.0, 20.0, 2.0, 9.0, 5.0],
            "class_id": [0, 0, 1, 0, -1],
            "score": [1.0, 0.95, 1.0, 0.92, float("nan")],
            "source": ["peak", "peak", "peak", "peak", "grid"],
        }
    )
    res = pointing_accuracy(prompts, gt, {"im": 7}, ("a", "b"))
    # Peaks: (2,2,a) inside; (20,20,a) outside; (2,2,b) no box of b; (9,9,a): centre 9.5 <= 10,
    # inside. All: 2 of 4. Top per (image, class): a -> (2,2) hit, b -> miss: 1 of 2.
    assert res["all_peaks"] == {"points": 4, "hits": 2, "accuracy": 0.5}
    assert res["top_peak"] == {"points": 2, "hits": 1, "accuracy": 0.5}
    # The image has no box of b: only a's top peak counts among the classes present, a hit.
    assert res["top_peak_present_classes"] == {"points": 1, "hits": 1, "accuracy": 1.0}
    assert res["per_class"]["a"]["all_peaks"]["accuracy"] == pytest.approx(2 / 3)  # type: ignore[index]
