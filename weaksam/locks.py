"""Resuming after a killed run: Snakemake's stale locks are found and removed safely.

Snakemake locks the working directory while it runs (``.snakemake/locks``) and removes the lock
when it ends, also on an error or Ctrl-C. A run killed outright (``kill -9``, a lost session,
an out-of-memory kill) leaves the lock behind, and the next run stops with ``LockException``
until someone runs ``--unlock``, which is unsafe when another run really is in progress.

Each main Snakemake process of this workflow records itself in ``.snakemake/weaksam-runs`` (host,
process id and the process's start time, so a reused id is not taken for the same run) and drops
the record when it exits. When the workflow loads, the locks are removed if, and only if, every
run recorded on this host has ended and none is recorded on another host. A run on another host
(a shared file system) cannot be checked from here: its lock is left and the message names it.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

RUNS = Path(".snakemake") / "weaksam-runs"
LOCKS = Path(".snakemake") / "locks"


@dataclass(frozen=True)
class Run:
    host: str
    pid: int
    started: str  # the process's start time, as the system gives it

    @property
    def name(self) -> str:
        return f"{self.host}-{self.pid}"


def start_field(stat: str) -> str:
    """Field 22 (start time) of a ``/proc/<pid>/stat`` line. The command name, field 2, is in
    parentheses and may hold spaces and parentheses, so fields are counted after the last ")"."""
    return stat[stat.rindex(")") + 2 :].split()[19]


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (field 22 of ``/proc/<pid>/stat``, clock ticks since boot),
    or None when no such process runs. Without ``/proc``: "alive" for a live process."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except OSError:
            return None
        return start_field(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "alive"
    return "alive"


def this_run() -> Run:
    pid = os.getpid()
    return Run(socket.gethostname(), pid, process_start(pid) or "alive")


def _recorded(root: Path) -> list[Run]:
    runs = []
    for path in sorted((root / RUNS).glob("*.json")):
        try:
            runs.append(Run(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)  # a record cut short by a kill: its run has ended
    return runs


def clear_stale_locks(root: Path = Path(), *, record: bool = True) -> list[str]:
    """Remove Snakemake's locks under ``root`` when every run that could hold them has ended,
    then (``record``) record this process as a run. Returns what was done, for the log."""
    host = socket.gethostname()
    me = this_run()
    live_here: list[Run] = []
    elsewhere: list[Run] = []
    for run in _recorded(root):
        if run.host != host:
            elsewhere.append(run)
        elif run.pid != me.pid and process_start(run.pid) == run.started:
            live_here.append(run)
        else:
            (root / RUNS / f"{run.name}.json").unlink(missing_ok=True)  # ended
    locks = sorted((root / LOCKS).glob("*.lock"))
    messages = []
    if locks and not live_here and not elsewhere:
        for lock in locks:
            lock.unlink(missing_ok=True)
        messages.append(
            f"removed the lock of an interrupted run ({len(locks)} lock files; no run of this "
            "workflow is alive): resuming"
        )
    elif locks and elsewhere and not live_here:
        names = ", ".join(f"pid {r.pid} on {r.host}" for r in elsewhere)
        messages.append(
            f"the working directory is locked by a run on another host ({names}); if it has "
            "ended, remove the lock with `snakemake --unlock` and the same arguments"
        )
    if record:
        (root / RUNS).mkdir(parents=True, exist_ok=True)
        path = root / RUNS / f"{me.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(me)))
        tmp.replace(path)
        # dropped when this process exits (any run, dry run or lint); a killed one leaves it
        atexit.register(release, root.resolve())
    return messages


def release(root: Path = Path()) -> None:
    """Drop this process's run record (the workflow's end, successful or not)."""
    (root / RUNS / f"{this_run().name}.json").unlink(missing_ok=True)
