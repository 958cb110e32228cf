"""Small file helpers: every writer goes through a temporary name and a rename."""

from __future__ import annotations

import json
import math
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


def json_safe(data: Any) -> Any:
    """Replace NaN and infinities by None (strict JSON has no NaN) and numpy scalars by Python's."""
    if isinstance(data, dict):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    if hasattr(data, "item") and callable(data.item):  # numpy scalar
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def write_json(path: str | Path, data: Any, *, indent: int | None = None) -> None:
    """Write ``data`` as strict JSON (NaN -> null) atomically."""
    with atomic_path(path) as tmp, tmp.open("w") as f:
        json.dump(json_safe(data), f, indent=indent, allow_nan=False)
        f.write("\n")
