"""Stale Snakemake locks after a killed run (weaksam.locks)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from weaksam.locks import (
    LOCKS,
    RUNS,
    Run,
    clear_stale_locks,
    machine,
    process_start,
    release,
    start_field,
    this_run,
)


def _lock(root: Path) -> Path:
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    lock = root / LOCKS / "0.output.lock"
    lock.write_text("results/x\n")
    return lock


def _record(root: Path, run: Run) -> None:
    (root / RUNS).mkdir(parents=True, exist_ok=True)
    (root / RUNS / f"{run.name}.json").write_text(json.dumps(run.__dict__))


@pytest.fixture
def other_process():  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_the_lock_of_a_killed_run_is_removed_and_this_run_recorded(tmp_path: Path) -> None:
    lock = _lock(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    _record(tmp_path, Run(machine(), dead.pid, "12345"))
    messages = clear_stale_locks(tmp_path)
    assert not lock.exists() and "interrupted run" in messages[0]
    records = sorted(p.name for p in (tmp_path / RUNS).iterdir())
    assert records == [f"{this_run().name}.json"]  # the dead run's record is gone, ours is in
    release(tmp_path)
    assert not list((tmp_path / RUNS).iterdir())


def test_a_live_run_keeps_its_lock(tmp_path: Path, other_process: subprocess.Popen) -> None:
    lock = _lock(tmp_path)
    started = process_start(other_process.pid)
    assert started is not None
    _record(tmp_path, Run(machine(), other_process.pid, started))
    assert "locked by a live run" in clear_stale_locks(tmp_path, record=False)[0]
    assert lock.exists()


def test_a_reused_process_id_is_not_the_recorded_run(
    tmp_path: Path, other_process: subprocess.Popen
) -> None:
    """The recorded pid is alive but started at another time: another process took the id."""
    lock = _lock(tmp_path)
    _record(tmp_path, Run(machine(), other_process.pid, "1"))
    assert clear_stale_locks(tmp_path, record=False)
    assert not lock.exists()


def test_a_run_on_another_host_is_left_and_named(tmp_path: Path) -> None:
    lock = _lock(tmp_path)
    _record(tmp_path, Run("node-17/4026531836", 4242, "99", 4242))
    messages = clear_stale_locks(tmp_path, record=False)
    assert lock.exists()
    assert "pid 4242 on node-17" in messages[0] and "--unlock" in messages[0]
    assert "node-17_4026531836-4242.json" in messages[0]  # the record to delete, named


def test_locks_without_records_and_cut_records(tmp_path: Path) -> None:
    """Locks with no run recorded (or only a record cut short by the kill) are stale."""
    lock = _lock(tmp_path)
    (tmp_path / RUNS).mkdir(parents=True)
    (tmp_path / RUNS / "h-1.json").write_text('{"host": "h", "pi')
    assert clear_stale_locks(tmp_path, record=False)
    assert not lock.exists() and not (tmp_path / RUNS / "h-1.json").exists()
    assert clear_stale_locks(tmp_path, record=False) == []  # nothing locked: nothing to say


def test_process_start_by_hand(other_process: subprocess.Popen) -> None:
    """Field 22 of /proc/<pid>/stat, read past a command name with spaces and parentheses."""
    # fields: 1 pid, 2 (comm), 3 state, 4..21 = 4, 5, ..., 21, 22 start time = 777
    line = "42 (my (odd) name) S " + " ".join(str(k) for k in range(4, 22)) + " 777 8 9\n"
    assert start_field(line) == "777"
    start = process_start(other_process.pid)
    stat = Path(f"/proc/{other_process.pid}/stat").read_text().split()
    assert start == stat[21]  # `sleep` has no spaces, so plain splitting agrees
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert process_start(dead.pid) is None


def test_jobs_of_a_run_killed_alone_keep_its_lock(tmp_path: Path) -> None:
    """The main process is gone but a job it started (same process group, started after it)
    still runs: the run is alive. When the job ends too, the lock is stale."""
    lock = _lock(tmp_path)
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 >/dev/null & echo $!"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    job = int(leader.communicate()[0])  # the leader has exited; its job runs on
    try:
        _record(tmp_path, Run(machine(), leader.pid, "0", leader.pid))
        messages = clear_stale_locks(tmp_path, record=False)
        assert lock.exists() and f"processes {job}" in messages[0]
    finally:
        subprocess.run(["kill", "-9", str(job)], check=False)
    for _ in range(50):  # the job is reparented and reaped by init
        if process_start(job) is None:
            break
        time.sleep(0.1)
    assert clear_stale_locks(tmp_path, record=False)
    assert not lock.exists()


def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    for _ in range(50):
        if process_start(proc.pid) is None:  # exited, not yet reaped: state Z
            break
        time.sleep(0.1)
    assert process_start(proc.pid) is None
    assert Path(f"/proc/{proc.pid}/stat").exists()  # still in the table, as a zombie
    proc.wait()


def test_a_live_run_is_named_when_it_holds_the_lock(
    tmp_path: Path, other_process: subprocess.Popen
) -> None:
    _lock(tmp_path)
    started = process_start(other_process.pid)
    assert started is not None
    _record(tmp_path, Run(machine(), other_process.pid, started, 0))
    messages = clear_stale_locks(tmp_path, record=False)
    assert f"processes {other_process.pid}" in messages[0]
