"""Resuming after a killed run: Snakemake's stale locks are found and removed safely.

Snakemake locks the working directory while it runs (``.snakemake/locks``) and removes the lock
when it ends, also on an error or Ctrl-C. A run killed outright (``kill -9``, a lost session,
an out-of-memory kill) leaves the lock behind, and the next run stops with ``LockException``
until someone runs ``--unlock``, which is unsafe when another run really is in progress.

Each main Snakemake process of this workflow records itself in ``.snakemake/weaksam-runs`` (host
and process-id namespace, process id, the process's start time, so that a reused id is not taken
for the same run, and its process group) and drops the record when it exits. A run has ended when
its main process has and no process of its group started since it did is left (jobs can outlive
a main process killed alone). When the workflow loads, the locks are removed if, and only if,
every run recorded on this host has ended and none is recorded on another host. A run on another host
(a shared file system) cannot be checked from here: its lock is left and the message names it.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

RUNS = Path(".snakemake") / "weaksam-runs"
LOCKS = Path(".snakemake") / "locks"


@dataclass(frozen=True)
class Run:
    host: str  # the host name and its process-id namespace: pids compare only within one
    pid: int
    started: str  # the process's start time, as the system gives it
    group: int = 0  # its process group: the jobs it started share it

    @property
    def name(self) -> str:
        return f"{self.host.replace('/', '_')}-{self.pid}"


def stat_fields(stat: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` line from field 3 (state) on. The command name,
    field 2, is in parentheses and may hold spaces and parentheses, so fields are counted after
    the last ")"; field n is at index n - 3 (state 0, process group 2, start time 19)."""
    return stat[stat.rindex(")") + 2 :].split()


def start_field(stat: str) -> str:
    """Field 22 (start time, clock ticks since boot) of a ``/proc/<pid>/stat`` line."""
    return stat_fields(stat)[19]


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def _signal_alive(send: Callable[[], None]) -> bool:
    try:
        send()
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (field 22 of ``/proc/<pid>/stat``), or None when no such
    process runs (or only as a zombie). Where ``/proc`` cannot tell (no ``/proc``, or
    ``hidepid``), "alive" for a process that takes signals."""
    if _has_proc():
        try:
            fields = stat_fields(Path(f"/proc/{pid}/stat").read_text())
        except FileNotFoundError:
            return None
        except OSError:  # hidden from this user: ask the kernel instead
            return "alive" if _signal_alive(lambda: os.kill(pid, 0)) else None
        return None if fields[0] == "Z" else fields[19]
    return "alive" if _signal_alive(lambda: os.kill(pid, 0)) else None


def group_members(group: int, since: str) -> list[int]:
    """Live processes of process group ``group`` started at or after ``since`` (a run's jobs,
    which may outlive a run killed alone). Without ``/proc``: the group id, if it takes
    signals."""
    if not _has_proc() or not since.isdigit():
        return [group] if group > 0 and _signal_alive(lambda: os.killpg(group, 0)) else []
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat.read_text())
        except (OSError, ValueError):
            continue  # ended meanwhile, or hidden
        if fields[0] != "Z" and int(fields[2]) == group and int(fields[19]) >= int(since):
            members.append(int(stat.parent.name))
    return members


def machine() -> str:
    """This host, as runs are told apart: host name and process-id namespace (containers that
    share a host name do not share process ids)."""
    try:
        namespace = Path("/proc/self/ns/pid").stat().st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def this_run() -> Run:
    pid = os.getpid()
    return Run(machine(), pid, process_start(pid) or "alive", os.getpgid(0))


def _recorded(root: Path) -> list[tuple[Path, Run]]:
    runs = []
    for path in sorted((root / RUNS).glob("*.json")):
        try:
            runs.append((path, Run(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)  # a record cut short by a kill: its run has ended
    return runs


def alive(run: Run) -> list[int]:
    """The processes that keep ``run`` alive: its main process (same start time: a reused id is
    another process) and the jobs left in its process group. Empty when it has ended."""
    main = [run.pid] if process_start(run.pid) == run.started else []
    jobs = group_members(run.group, run.started) if run.group > 0 else []
    return sorted(set(main + jobs) - {os.getpid()})


def clear_stale_locks(root: Path = Path(), *, record: bool = True) -> list[str]:
    """Remove Snakemake's locks under ``root`` when every run that could hold them has ended,
    then (``record``) record this process as a run. Returns what was done, for the log."""
    here = machine()
    me = this_run()
    live_here: list[tuple[Run, list[int]]] = []
    elsewhere: list[tuple[Path, Run]] = []
    for path, run in _recorded(root):
        if run.host != here:
            elsewhere.append((path, run))
        elif run.pid == me.pid:
            continue
        elif processes := alive(run):
            live_here.append((run, processes))
        else:
            path.unlink(missing_ok=True)  # ended
    locks = sorted((root / LOCKS).glob("*.lock"))
    messages = []
    if locks and live_here:
        names = "; ".join(f"run {r.pid}: processes {', '.join(map(str, p))}" for r, p in live_here)
        messages.append(f"the working directory is locked by a live run of this workflow ({names})")
    elif locks and elsewhere:
        names = ", ".join(f"pid {r.pid} on {r.host.split('/')[0]} ({p})" for p, r in elsewhere)
        messages.append(
            f"the working directory is locked by a run recorded on another host: {names}. If it "
            "has ended, run `snakemake --unlock` with the same arguments and delete that record"
        )
    elif locks:
        for lock in locks:
            lock.unlink(missing_ok=True)
        messages.append(
            f"removed the lock of an interrupted run ({len(locks)} lock files; no run of this "
            "workflow is alive): resuming"
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
