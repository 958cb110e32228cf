"""bench/timeline.py: a run's timeline and core use from its Snakemake log."""

from __future__ import annotations

import pytest

from bench.timeline import parse_log, summarise

LOG = """Building DAG of jobs...
[Fri Dec  4 05:17:31 2026]
localrule train_classifier:
    input: results/demo/manifest.parquet
    jobid: 7
    threads: 2
    resources: tmpdir=/tmp
Select jobs to execute...
[Fri Dec  4 05:19:11 2026]
Finished jobid: 7 (Rule: train_classifier)
[Fri Dec  4 05:19:11 2026]
localrule cam_shard:
    jobid: 8
    wildcards: split=trainval, shard=0
[Fri Dec  4 05:19:12 2026]
rule cam_shard:
    jobid: 9
    wildcards: split=trainval, shard=1
[Fri Dec  4 05:19:51 2026]
Finished jobid: 8 (Rule: cam_shard)
[Fri Dec  4 05:20:11 2026]
Finished jobid: 9 (Rule: cam_shard)
[Fri Dec  4 05:20:12 2026]
localrule prompts:
    jobid: 10
"""


def test_timeline_by_hand() -> None:
    jobs = parse_log(LOG)
    # starts from the first job (05:17:31): classifier 0-100 s on 2 threads; the shards
    # 100-140 s and 101-160 s (threads not logged: 1); prompts started at 161 s, not finished
    assert [(j.rule, j.start, j.end, j.threads) for j in jobs] == [
        ("train_classifier", 0.0, 100.0, 2),
        ("cam_shard", 100.0, 140.0, 1),
        ("cam_shard", 101.0, 160.0, 1),
        ("prompts", 161.0, None, 1),
    ]
    summary = summarise(jobs, cores=2)
    # wall 0-160 s; held 2 x 100 + 40 + 59 = 299 thread-s of 2 x 160 = 320
    assert summary["wall_seconds"] == 160.0
    assert summary["thread_seconds"] == 299.0
    assert summary["busy_share"] == pytest.approx(299 / 320)
    assert summary["thread_seconds_per_rule"] == {"train_classifier": 200.0, "cam_shard": 99.0}
    assert summary["unfinished"] == ["prompts"]


def test_timeline_without_a_finished_job_is_an_error() -> None:
    with pytest.raises(ValueError, match="no finished job"):
        summarise(parse_log(LOG.split("Select jobs")[0]), cores=2)
