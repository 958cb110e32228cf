"""``weaksam inspect`` on each artifact type, including files with problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import build_tiny_shapes
from weaksam.cli import main
from weaksam.h5store import ShardWriter
from weaksam.inspect import inspect_file
from weaksam.proposals.store import PROPOSAL_STORE_KIND, SOURCES


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inspect")
    build_tiny_shapes(root, num_trainval=3)
    return root / "out"


def test_manifest_and_ground_truth(built: Path) -> None:
    s = inspect_file(built / "manifest.parquet")
    assert s.kind == "manifest" and s.facts["images"] == 5 and not s.problems
    gt = inspect_file(built / "gt" / "test.json")
    assert gt.kind == "COCO instances" and gt.facts["images"] == 2 and not gt.problems


def test_coco_problems_are_listed(tmp_path: Path) -> None:
    bad = {
        "images": [{"id": 1, "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 2]},  # outside
            {"id": 2, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]},  # unknown image
            {"id": 3, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]},  # unknown class
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    problems = " | ".join(inspect_file(path).problems)
    assert (
        "outside" in problems and "unknown images" in problems and "unknown categories" in problems
    )
    assert main(["inspect", str(path)]) == 1


def test_detections_prompts_store_and_checkpoint(tmp_path: Path) -> None:
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 3]}]))
    s = inspect_file(dets)
    assert s.kind.startswith("COCO results") and len(s.problems) == 2  # no score, zero width
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame(
        {
            "image_id": ["a", "a"],
            "x": [1.0, 2.0],
            "y": [1.0, 2.0],
            "class_id": [0, -1],
            "score": [0.9, np.nan],
            "source": ["peak", "grid"],
        }
    ).to_parquet(prompts)
    p = inspect_file(prompts)
    assert p.kind == "prompts" and p.facts["by_source"] == {"peak": 1, "grid": 1}
    store = tmp_path / "p.h5"
    with ShardWriter(
        store, kind=PROPOSAL_STORE_KIND, config_digest="abc", attrs={"sources": SOURCES}
    ) as w:
        w.write(
            "a",
            {
                "boxes": np.array([[0, 0, 5, 5], [3, 3, 3, 9]], np.float32),
                "scores": np.ones(2, np.float32),
                "source": np.array([0, 1], np.uint8),
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
    h = inspect_file(store)
    assert h.kind == "proposals" and h.facts["config_digest"] == "abc" and h.facts["boxes"] == 2
    assert h.facts["by source"] == {"grid": 1, "peak": 1}
    assert any("without proposals" in x for x in h.problems) and any(
        "zero" in x for x in h.problems
    )
    ckpt = tmp_path / "m.pt"
    torch.save(
        {
            "kind": "wsod",
            "format_version": 1,
            "head": "mist",
            "model": {"w": torch.tensor([1.0, float("nan")])},
            "classes": ["a"],
        },
        ckpt,
    )
    c = inspect_file(ckpt)
    assert c.kind == "checkpoint (wsod)" and c.facts["parameters"] == 2 and c.problems


def test_unknown_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    other = tmp_path / "x.txt"
    other.write_text("hello")
    s = inspect_file(other)
    assert s.kind == "unknown" and "not a weaksam artifact" in s.problems[0]


def _store(path: Path, groups: dict[str, dict[str, np.ndarray]]) -> Path:
    with ShardWriter(
        path, kind=PROPOSAL_STORE_KIND, config_digest="abc", attrs={"sources": SOURCES}
    ) as w:
        for name, datasets in groups.items():
            w.write(name, datasets)
    return path


def _one_box() -> dict[str, np.ndarray]:
    return {
        "boxes": np.array([[0, 0, 5, 5]], np.float32),
        "scores": np.ones(1, np.float32),
        "source": np.zeros(1, np.uint8),
    }


def test_damaged_stores_and_files_are_flagged_by_name(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import h5py

    deleted = _store(tmp_path / "deleted.h5", {"a": _one_box(), "b": _one_box()})
    with h5py.File(deleted, "a") as f:
        del f["images"]["b"]
    assert any("finished with 2" in p for p in inspect_file(deleted).problems)

    no_boxes = _store(
        tmp_path / "no_boxes.h5", {"a": {k: v for k, v in _one_box().items() if k != "boxes"}}
    )
    s = inspect_file(no_boxes)
    assert any("lack datasets, e.g. a has no ['boxes']" in p for p in s.problems)

    good = _store(tmp_path / "good.h5", {"a": _one_box()})
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:1000])
    t = inspect_file(truncated)
    assert t.kind == "unreadable" and str(truncated) in t.problems[0]

    pgt = tmp_path / "pgt.json"
    pgt.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 1, "width": -5, "height": 10},
                    {"id": 2, "width": float("nan"), "height": 10},
                ],
                "categories": [{"id": 1, "name": "a"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, float("nan"), 2]}
                ],
            }
        )
    )
    problems = " | ".join(inspect_file(pgt).problems)
    assert "2 images with a missing, zero, negative or non-finite width" in problems
    assert "1 boxes with zero, negative or non-finite width" in problems

    # every file is inspected even after a bad one; the status says there were problems
    assert main(["inspect", str(truncated), str(tmp_path / "nope.h5"), str(good)]) == 1
    out = capsys.readouterr().out
    assert out.count("== ") == 3 and "nope.h5: no such file" in out and "kind: proposals" in out


def test_cli_refuses_bad_arguments_without_a_traceback(built: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    gt = built / "gt" / "test.json"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--gt", str(gt), "--detections", str(gt), "--iou", "1.5"])
    assert exc.value.code == 2 and "1.5 is not in (0, 1]" in capsys.readouterr().err
    results = built
    code = main(
        [
            "show",
            "--results",
            str(results),
            "--image",
            "nope",
            "--stage",
            "pgt",
            "-o",
            str(tmp_path / "x.png"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "image 'nope' is not in" in err and "Traceback" not in err
