"""Logging set-up for rule scripts: log records and progress bars go to the rule's log file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class _ProgressTarget:
    """Where progress bars are written: the rule's log once set up, else stderr."""

    stream: IO[str] | None = None


def setup_rule_logging(log_path: str | Path | None, level: int = logging.INFO) -> None:
    """Send the library's log records (and warnings) and its progress bars to ``log_path``
    (or stderr when None)."""
    handler: logging.Handler
    if log_path is None:
        handler = logging.StreamHandler()
        _ProgressTarget.stream = None
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path, mode="w")
        handler = file_handler
        _ProgressTarget.stream = file_handler.stream
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


def progress(items: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar over ``items``, written to the rule's log (plain lines, every 10 s)."""
    stream = _ProgressTarget.stream or sys.stderr
    yield from tqdm(
        items,
        desc=desc,
        total=total,
        file=stream,
        mininterval=10,
        ascii=True,
        dynamic_ncols=False,
        ncols=100,
    )
