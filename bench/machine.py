"""The machine block every bench result records."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when it has uncommitted changes to tracked files."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), so that records from different machines of the
    same platform string can be told apart; ``unknown`` where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
    }


def float_list(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated numbers, ``0.3,0.5`` -> ``(0.3, 0.5)``."""
    return tuple(float(t) for t in text.split(","))


def variant_record(out: Path, **meta: Any) -> dict[str, Any]:
    """A tuning script's record: the one at ``out`` kept and extended (its ``variants`` stay),
    with ``meta`` and the machine block updated."""
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    record.update({**meta, "machine": machine_info()})
    record.setdefault("variants", {})
    return record
