"""When each job of a Snakemake run ran, and how busy the cores were, from the run's log.

Snakemake's log (``.snakemake/log/*.snakemake.log``) stamps every job's start (``rule X:`` /
``localrule X:`` with its ``jobid``) and end (``Finished jobid: N``) to the second; with the
threads each job was given (``threads:``; 1 when the log omits it) this gives the run's
timeline: each job's start, end and seconds, the sum of thread-seconds the jobs held and what
share of ``cores x wall`` that is. A share near 1 means the cores were busy all along, so the wall
time is the work divided by the cores, and only less work (not another job order) makes the
run shorter. Jobs of under ``--min-seconds`` are left out of the printed list, not the sums.

    .venv/bin/python bench/timeline.py [LOG] [--cores 2] [--out bench/results/timeline_demo.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):")
JOBID = re.compile(r"^\s+jobid: (\d+)")
THREADS = re.compile(r"^\s+threads: (\d+)")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


@dataclass
class Job:
    jobid: int
    rule: str
    start: float  # seconds from the first job's start
    end: float | None = None
    threads: int = 1

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


def parse_log(text: str) -> list[Job]:
    """The jobs of a Snakemake log, in order of start; a job without ``Finished`` (failed or
    still running) has ``end`` None."""
    stamp: datetime | None = None
    origin: datetime | None = None
    pending: tuple[str, datetime] | None = None
    jobs: dict[int, Job] = {}
    last: Job | None = None
    for line in text.splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif (m := RULE.match(line)) and stamp is not None:
            pending, last = (m.group(1), stamp), None
        elif (m := JOBID.match(line)) and pending is not None:
            rule, started = pending
            origin = origin or started
            last = Job(int(m.group(1)), rule, (started - origin).total_seconds())
            jobs[last.jobid] = last
            pending = None
        elif (m := THREADS.match(line)) and last is not None:
            last.threads = int(m.group(1))
        elif (m := FINISHED.match(line)) and stamp is not None and origin is not None:
            job = jobs.get(int(m.group(1)))
            if job is not None:
                job.end = (stamp - origin).total_seconds()
    return sorted(jobs.values(), key=lambda j: (j.start, j.jobid))


def summarise(jobs: list[Job], cores: int) -> dict[str, Any]:
    """Wall seconds (first start to last end), thread-seconds held, and their share of
    ``cores x wall``; thread-seconds per rule."""
    done = [j for j in jobs if j.end is not None]
    if not done:
        raise ValueError("no finished job in the log")
    wall = max(j.end for j in done if j.end is not None) - min(j.start for j in done)
    held = sum(min(j.threads, cores) * (j.seconds or 0.0) for j in done)
    per_rule: dict[str, float] = {}
    for j in done:
        per_rule[j.rule] = per_rule.get(j.rule, 0.0) + min(j.threads, cores) * (j.seconds or 0.0)
    return {
        "wall_seconds": wall,
        "thread_seconds": held,
        "busy_share": held / (cores * wall) if wall > 0 else None,
        "thread_seconds_per_rule": dict(sorted(per_rule.items(), key=lambda kv: -kv[1])),
        "unfinished": [j.rule for j in jobs if j.end is None],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("log", nargs="?", type=Path, default=None, help="default: the latest log")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    log = args.log
    if log is None:
        logs = sorted((REPO / ".snakemake" / "log").glob("*.snakemake.log"))
        if not logs:
            raise SystemExit("no Snakemake log under .snakemake/log")
        log = logs[-1]
    jobs = parse_log(log.read_text())
    summary = summarise(jobs, args.cores)
    print(f"{'start':>7} {'end':>7} {'s':>6} threads  rule")
    for j in jobs:
        if j.seconds is not None and j.seconds >= args.min_seconds:
            print(f"{j.start:7.0f} {j.end:7.0f} {j.seconds:6.0f} {j.threads:7d}  {j.rule}")
    print(
        f"wall {summary['wall_seconds']:.0f} s; jobs held {summary['thread_seconds']:.0f} "
        f"thread-seconds = {summary['busy_share']:.2f} of {args.cores} cores x wall"
    )
    for rule, seconds in summary["thread_seconds_per_rule"].items():
        if seconds >= args.min_seconds:
            print(f"  {rule:28s} {seconds:7.0f} thread-s")
    if args.out:
        record = {
            "log": log.name,
            "cores": args.cores,
            "summary": summary,
            "jobs": [asdict(j) for j in jobs],
            "machine": machine_info(),
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
