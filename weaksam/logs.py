"""Logging set-up for rule scripts: everything goes to the rule's log file."""

from __future__ import annotations

import logging
from pathlib import Path


def setup_rule_logging(log_path: str | Path | None, level: int = logging.INFO) -> None:
    """Send the library's log records (and warnings) to ``log_path`` (or stderr when None)."""
    handler: logging.Handler
    if log_path is None:
        handler = logging.StreamHandler()
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
