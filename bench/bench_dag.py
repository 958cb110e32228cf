"""DAG scaling: `snakemake --dry-run` time and job count of the paper's VOC07 config for fake VOC
trees of 1k, 10k and 100k images (empty image and annotation files and checkpoint files: a dry
run reads none of them).

The reference in the same run is the dry run of a one-rule Snakefile, Snakemake's fixed start-up
cost on this machine; the ratio says what weaksam's DAG adds on top of it. Goal: the job count
does not change with the number of images, and the dry run stays under 10 s at 100k.

Writes bench/results/dag.json with the machine.

    .venv/bin/python bench/bench_dag.py [--sizes 1000 10000 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_paper_configs import WEIGHTS, fake_voc  # noqa: E402


def fake_tree(root: Path, images: int) -> None:
    """The paper-config tests' fake VOC tree plus empty checkpoint files."""
    fake_voc(root, images)
    (root / "resources").mkdir()
    for name in WEIGHTS:
        (root / "resources" / name).touch()


def timed(cmd: list[str], repeats: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - start
        if run.returncode != 0:
            raise RuntimeError(run.stdout[-2000:] + run.stderr[-2000:])
        best, out = min(best, elapsed), run.stdout
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    snakemake = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        ref.mkdir()
        (ref / "Snakefile").write_text('rule all:\n    output: "x"\n    shell: "touch {output}"\n')
        ref_s, _ = timed([*snakemake, "-s", str(ref / "Snakefile"), "-d", str(ref)], args.repeats)
        for n in args.sizes:
            work = Path(tmp) / str(n)
            fake_tree(work, n)
            cmd = [*snakemake, "-s", str(REPO / "Snakefile"), "-d", str(work)]
            cmd += ["--configfile", str(REPO / "config" / "voc07.yaml")]
            seconds, out = timed(cmd, args.repeats)
            jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
            row = {
                "images": n,
                "jobs": jobs.get("total", sum(jobs.values())),
                "dry_run_s": round(seconds, 3),
                "ratio_to_one_rule_snakefile": round(seconds / ref_s, 2),
            }
            rows.append(row)
            print(row, flush=True)
    result = {
        "benchmark": "dag_scaling",
        "config": "config/voc07.yaml (compute.shards 8)",
        "reference": "dry run of a one-rule Snakefile",
        "reference_s": round(ref_s, 3),
        "repeats": args.repeats,
        "rows": rows,
        "job_count_constant": len({r["jobs"] for r in rows}) == 1,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    out = REPO / "bench" / "results" / "dag.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
