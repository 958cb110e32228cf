"""Logging set-up for rule scripts: log records and progress bars go to the rule's log file."""

from __future__ import annotations

import atexit
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class _ProgressTarget:
    """Where progress bars are written: the rule's log once set up, else stderr."""

    stream: IO[str] | None = None


def describe_output(path: str | Path) -> str:
    """A few words on what a finished output holds: images for stores, instance and result
    files, rows for tables, size otherwise."""
    p = Path(path)
    if p.is_dir():
        return f"{p.name}/ ({sum(1 for _ in p.rglob('*'))} files)"
    size = p.stat().st_size
    what = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
    try:
        if p.suffix == ".h5":
            import h5py

            with h5py.File(p, "r") as f:
                what = f"{len(f)} images, {what}"
        elif p.suffix == ".parquet":
            import pandas as pd

            what = f"{len(pd.read_parquet(p))} rows, {what}"
        elif p.suffix == ".json" and size < 500e6:
            data = json.loads(p.read_text())
            if isinstance(data, dict) and isinstance(data.get("images"), list):
                n = len(data.get("annotations", []))
                what = f"{len(data['images'])} images, {n} annotations, {what}"
            elif isinstance(data, list):
                images = len({d.get("image_id") for d in data if isinstance(d, dict)})
                what = f"{len(data)} detections on {images} images, {what}"
    except (OSError, ValueError, KeyError):
        pass  # the summary is informative only; the rule itself already checked its output
    return f"{p.name} ({what})"


def _summarise(rule: str, outputs: Sequence[str], start: float) -> None:
    if not outputs or not all(Path(o).exists() for o in outputs):
        return  # the rule failed: its error is already in the log
    described = "; ".join(describe_output(o) for o in outputs)
    logging.getLogger("weaksam.rule").info(
        "%s done in %.1f s: wrote %s", rule, time.perf_counter() - start, described
    )


def setup_rule_logging(
    log_path: str | Path | None,
    level: int = logging.INFO,
    *,
    rule: str | None = None,
    outputs: Iterable[str] = (),
    append: bool = False,
) -> None:
    """Send the library's log records (and warnings) and its progress bars to ``log_path``
    (or stderr when None). With ``rule``, one line at exit says what the rule wrote (images,
    annotations, rows, size) and how long it took, once every output exists."""
    handler: logging.Handler
    if log_path is None:
        handler = logging.StreamHandler()
        _ProgressTarget.stream = None
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path, mode="a" if append else "w")
        handler = file_handler
        _ProgressTarget.stream = file_handler.stream
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    if rule is not None:
        atexit.register(_summarise, rule, [str(o) for o in outputs], time.perf_counter())


@contextmanager
def input_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Report an error in the user's input (``kinds``: e.g. ``DatasetError``, ``ConfigError``,
    whose messages name the file or key) as one line in the rule's log and on stderr, and exit
    with status 1: a traceback would bury the message under the reader's internals."""
    try:
        yield
    except kinds as exc:
        logging.getLogger("weaksam").error("%s", exc)
        print(f"weaksam: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


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
