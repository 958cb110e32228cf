"""What the workflow's rerun decisions look at besides the config: file contents and listings.

- ``content_digest(paths)``: sha256 of what files hold. Jobs that read the manifest, the ground
  truth or a merged store carry it in their ``params``, so a rewrite that changes nothing
  (the dataset rule rerun on unchanged data, a store merged from another number of shards)
  reruns nothing after it. Digests are cached by (path, size, modification time), in this
  process and in ``.snakemake/weaksam-content/`` for the jobs' own processes.
- ``listing_digest(paths)``: sha256 of the names, sizes and modification times of every file
  under ``paths``: the dataset rule's trigger for the files a dataset is read from, so that an
  added, changed or deleted image or annotation file reruns it (without reading the files).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

CACHE_DIR = Path(".snakemake") / "weaksam-content"
ABSENT = "absent"

_memory: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path, cache_dir: Path | None = CACHE_DIR) -> str:
    """sha256 of one file's bytes ("absent" when it does not exist)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return ABSENT
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _memory:
        return _memory[key]
    record = None
    if cache_dir is not None:
        record = cache_dir / (hashlib.sha256(key[0].encode()).hexdigest()[:32] + ".json")
        try:
            cached = json.loads(record.read_text())
            if (cached["size"], cached["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                _memory[key] = str(cached["sha256"])
                return _memory[key]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    digest = _file_sha256(path)
    _memory[key] = digest
    if record is not None:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
            )
            tmp.replace(record)
        except OSError:
            pass  # a read-only working directory: the digest is only not cached
    return digest


def content_digest(paths: Iterable[str | Path]) -> str:
    """One digest (16 hex) of the contents of ``paths``, in order."""
    parts = [f"{Path(p).name}:{file_digest(p)}" for p in paths]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _walk(path: Path) -> Iterable[tuple[str, int, int]]:
    if path.is_file():
        st = path.stat()
        yield str(path), st.st_size, st.st_mtime_ns
        return
    if not path.is_dir():
        yield str(path), -1, -1  # absent: its appearing is a change too
        return
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            try:
                st = full.stat()
            except OSError:
                yield str(full), -1, -1  # a dangling link: listed, the reader reports it
                continue
            yield str(full), st.st_size, st.st_mtime_ns


def listing_digest(paths: Iterable[str | Path]) -> str:
    """Digest (16 hex) of the path, size and modification time of every file under ``paths``
    (files or folders, walked in sorted order; symbolic links followed)."""
    h = hashlib.sha256()
    for root in paths:
        for name, size, mtime in _walk(Path(root)):
            h.update(f"{name}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()[:16]
