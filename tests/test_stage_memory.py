"""bench/stage_memory.py: the per-stage peak memory table from Snakemake's benchmark files."""

from __future__ import annotations

from pathlib import Path

from bench.stage_memory import stage_of, stage_table

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(folder: Path, stem: str, seconds: float, rss: float | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.tsv").write_text(
        HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t1\t1\n"
    )


def test_stages_take_their_largest_job_by_hand(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks"
    _bench(bench, "proposals_trainval_0", 10.0, 900.5)
    _bench(bench, "proposals_test_1", 4.0, 1200.0)
    _bench(bench, "train_classifier", 7.0, 2000.0)
    _bench(bench, "retrain_mist_no_roi_drop", 3.0, "NA")  # a missing figure counts as 0
    table = stage_table(tmp_path)
    # workflow order: classifier, proposals, retrain; proposals: peak max(900.5, 1200) = 1200,
    # longest max(10, 4) = 10, sum 10 + 4 = 14
    assert [r["stage"] for r in table] == [
        "CAM classifier training",
        "SAM proposals (per shard)",
        "Faster R-CNN training + test",
    ]
    assert table[1] == {
        "stage": "SAM proposals (per shard)",
        "jobs": 2,
        "peak_rss_mib": 1200.0,
        "longest_s": 10.0,
        "sum_s": 14.0,
    }
    assert table[2]["peak_rss_mib"] == 0.0
    assert stage_of("something_new") == "something_new"
