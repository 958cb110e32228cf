"""Small file helpers: every writer goes through a temporary name and a rename."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A killed or failing writer therefore never leaves a file that looks complete.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        tmp.replace(final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data: Any, *, indent: int | None = None) -> None:
    """Write ``data`` as JSON atomically."""
    with atomic_path(path) as tmp, tmp.open("w") as f:
        json.dump(data, f, indent=indent)
        f.write("\n")
