"""The SLURM tier: a real single-node SLURM (Debian's slurm-wlm, munge, one fake GPU GRES) runs
the tiny workflow through ``profiles/slurm``.

It runs when the suite runs as root on Debian (CI does) and is skipped with the reason elsewhere;
``WEAKSAM_SLURM_TESTS=0`` skips it too. tests/slurm/up.sh brings the cluster up (installing the
packages when missing) and tests/slurm/down.sh stops only the daemons it started. The profile is
the repository's with three test-node changes: memory requests that fit the 2-CPU node, status
polls every 2 s instead of 10-20 s, and no retries (so a cancelled job fails the run).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_workflow import TINY, write_config

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "slurm"
pytestmark = pytest.mark.slurm

BRING_UP: dict[str, float] = {}  # printed in the terminal summary (tests/conftest.py)


def _unavailable() -> str | None:
    if os.environ.get("WEAKSAM_SLURM_TESTS") == "0":
        return "WEAKSAM_SLURM_TESTS=0"
    if os.geteuid() != 0:
        return "the SLURM tier needs root (it installs and starts slurmctld, slurmd and munged)"
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return "the SLURM tier needs Debian (it installs slurm-wlm and munge with apt-get)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = _unavailable()
    if reason:
        pytest.skip(f"SLURM tier skipped: {reason}")
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**os.environ, "STATE": str(state)}
    start = time.perf_counter()
    up = subprocess.run(
        ["bash", str(HERE / "up.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    BRING_UP["seconds"] = time.perf_counter() - start
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        yield state
    finally:
        subprocess.run(["bash", str(HERE / "down.sh")], env=env, timeout=120, check=False)


def test_profile_sends_every_gpu_rule_to_the_gpu_partition() -> None:
    """Dry run (no cluster needed): jobs of rules that declare GPUs get the GPU partition and
    model, the others the CPU partition."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", "--nolock"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+resources: (.*)$", out.stdout, re.M)
    assert len(jobs) > 20
    for rule, resources in jobs:
        if rule == "all":
            continue
        if re.search(r"\bgpu=[1-9]", resources):
            assert "slurm_partition=gpu" in resources and "gpu_model=" in resources, rule
        else:
            assert "slurm_partition=debug" in resources, rule


def test_the_profile_names_every_rule_that_asks_for_a_gpu() -> None:
    """Every rule of rules/*.smk that declares ``gpu=`` (itself, or through ``use rule ... as``)
    is in the profile's set-resources, so it goes to the GPU partition; the dry run above sees
    only the rules the demo config runs (and only up to its first checkpoints)."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    blocks = re.split(r"^(?=(?:rule|checkpoint|use rule) )", text, flags=re.M)
    gpu: set[str] = set()
    inherits: list[tuple[str, str]] = []
    for block in blocks:
        own = re.match(r"(?:rule|checkpoint) (\w+):", block)
        used = re.match(r"use rule (\w+) as (\w+)", block)
        if own and re.search(r"^\s+gpu=", block, re.M):
            gpu.add(own[1])
        if used:
            inherits.append((used[1], used[2]))
    for parent, child in inherits:
        if parent in gpu:
            gpu.add(child)
    assert {"dino_train", "mask2former_detect", "predict_dino", "wsod_train"} <= gpu
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert gpu - set(profile["set-resources"]) == set()


def _test_profile(root: Path) -> Path:
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"]["mem_mb"] = 500
    profile["default-resources"]["runtime"] = 30
    # yaml gives every rule the same (anchored) dict: one change covers all GPU rules
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 1500
        resources["runtime"] = 30
    profile["retries"] = 0
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["seconds-between-status-checks"] = 2
    profile["latency-wait"] = 5
    out = root / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile))
    return out


def _snakemake(workdir: Path, config: Path, profile: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
        "--configfile",
        str(config),
        "--profile",
        str(profile),
    ]


def _run(cmd: list[str], timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    """Run Snakemake, stopping it with SIGINT on timeout (SIGTERM makes it wait for its jobs)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        raise AssertionError(f"snakemake timed out after {timeout} s:\n{out[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _jobs() -> dict[str, dict[str, str]]:
    """Every job the controller remembers (MinJobAge is an hour): id -> its fields."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True
    ).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def _rule(comment: str, rules: list[str]) -> str:
    """The plugin's job comment is ``rule_<rule>`` or ``rule_<rule>_wildcards_<values>``."""
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    assert name in rules, f"unknown rule in job comment {comment!r}"
    return name


def test_tiny_workflow_through_slurm(cluster: Path, tmp_path: Path) -> None:
    tiny = {
        **TINY,
        "wsod": {**TINY["wsod"], "proposal_methods": ["weaksam"]},
        "retrain": {**TINY["retrain"], "compare_without_roi_drop": False},
    }
    config = write_config(tmp_path / "tiny.yaml", tiny)
    profile = _test_profile(tmp_path)
    gpu_rules = list(yaml.safe_load((profile / "config.yaml").read_text())["set-resources"])
    before = set(_jobs())

    run = _run(_snakemake(tmp_path, config, profile))
    assert run.returncode == 0, run.stdout[-4000:]
    results = tmp_path / "results" / "tiny"
    assert (results / "maskrcnn" / "mist" / "metrics_test.json").is_file()

    # the job records: GPU rules asked for a GPU on the GPU partition, CPU rules for none
    listed = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules", "--configfile", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    jobs = {k: v for k, v in _jobs().items() if k not in before}
    assert len(jobs) > 20
    seen = set()
    for job in jobs.values():
        rule = _rule(job["Comment"], listed)
        seen.add(rule)
        assert job["JobState"] == "COMPLETED", (rule, job["JobState"])
        gres = job.get("TresPerJob", "") + job.get("TresPerNode", "")
        if rule in gpu_rules:
            assert job["Partition"] == "gpu" and "gpu:1" in gres, (rule, job)
        else:
            assert job["Partition"] == "debug" and "gpu" not in gres, (rule, job)
    assert {"train_classifier", "proposals_shard", "wsod_train", "maskrcnn_train"} <= seen
    assert {"dataset", "proposals_merge", "pgt"} <= seen

    # a rerun with nothing changed submits nothing
    count = len(_jobs())
    again = _run(_snakemake(tmp_path, config, profile))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-2000:]
    assert len(_jobs()) == count

    # a job cancelled with scancel fails the run clearly; a rerun completes what is left
    (results / "detector" / "mist" / "metrics_test.json").unlink()
    (results / "wsis" / "mist" / "quality.json").unlink()
    before = set(_jobs())
    proc = subprocess.Popen(
        _snakemake(tmp_path, config, profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cancelled = None
    deadline = time.monotonic() + 300
    while cancelled is None and time.monotonic() < deadline and proc.poll() is None:
        for job_id, job in _jobs().items():
            if job_id not in before and job["Comment"].startswith("rule_retrain_metrics"):
                subprocess.run(["scancel", job_id], check=True)
                cancelled = job_id
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert cancelled is not None, out[-3000:]
    assert proc.returncode != 0, out[-3000:]
    assert "retrain_metrics" in out and "CANCELLED" in out, out[-3000:]
    assert not (results / "detector" / "mist" / "metrics_test.json").exists()
    rerun = _run(_snakemake(tmp_path, config, profile))
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert (results / "detector" / "mist" / "metrics_test.json").is_file()
    assert (results / "wsis" / "mist" / "quality.json").is_file()
