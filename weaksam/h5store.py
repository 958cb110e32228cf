"""Per-image HDF5 stores, written in shards, resumable per image, merged in manifest order.

Layout: one group per image id (``/images/{image_id}``) holding that image's datasets; file
attributes ``kind`` (what the store holds), ``format_version``, ``config_digest``, ``classes``
(JSON), ``image_count`` (the groups it was finished with) and anything else the writer passes. A group is complete once its ``complete`` attribute is
set, which happens after all its datasets are written.

A shard is written to ``{path}.partial`` and renamed to ``path`` when every image of the shard is
done. Snakemake removes the outputs of a failed job, not the ``.partial`` file, so a rerun after a
kill reopens it and skips the images already complete. A ``.partial`` written under another
config digest, or unreadable (killed mid-write), is discarded and started again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import h5py
import numpy as np

logger = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1


class StoreError(ValueError):
    """A store is missing, of another kind or version, or was written under another config."""


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


# attributes of a shard's store (not of the merged one)
SHARD_INDEX = "shard_index"
SHARD_COUNT = "shard_count"


class ShardWriter:
    """Context manager writing image groups into ``path`` (via ``path.partial``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str,
        config_digest: str,
        attrs: Mapping[str, Any] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        """``shard`` = (index, count) for one shard of a split: recorded, so that a partial file
        of another sharding is never resumed and the merge can check its shards."""
        self.path = Path(path)
        self.partial = _partial(self.path)
        self.kind = kind
        self.digest = config_digest
        self.attrs = dict(attrs or {})
        if shard is not None:
            self.attrs.update({SHARD_INDEX: shard[0], SHARD_COUNT: shard[1]})
        self._file: h5py.File | None = None

    def __enter__(self) -> ShardWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.exists():
            try:
                f = h5py.File(self.partial, "a")
                same_shard = all(
                    f.attrs.get(k) == self.attrs.get(k) for k in (SHARD_INDEX, SHARD_COUNT)
                )
                if (
                    f.attrs.get("config_digest") != self.digest
                    or f.attrs.get("kind") != self.kind
                    or not same_shard
                ):
                    f.close()
                    logger.warning(
                        "%s was written under another config or sharding; starting again",
                        self.partial,
                    )
                    self.partial.unlink()
                else:
                    self._file = f
                    logger.info(
                        "resuming %s: %d images already done", self.partial, len(self.done_ids())
                    )
            except OSError:
                logger.warning("%s is unreadable (killed mid-write?); starting again", self.partial)
                self.partial.unlink()
        if self._file is None:
            self._file = h5py.File(self.partial, "w")
            self._file.attrs["kind"] = self.kind
            self._file.attrs["format_version"] = STORE_FORMAT_VERSION
            self._file.attrs["config_digest"] = self.digest
            for key, value in self.attrs.items():
                self._file.attrs[key] = (
                    value if isinstance(value, str | int | float) else json.dumps(value)
                )
            self._file.require_group("images")
        return self

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            raise RuntimeError("ShardWriter used outside its with-block")
        return self._file

    def done_ids(self) -> set[str]:
        images = self.file["images"]
        return {k for k in images if images[k].attrs.get("complete", False)}

    def write(
        self,
        image_id: str,
        datasets: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one image's datasets (replacing an incomplete group) and mark it complete."""
        images = self.file["images"]
        if image_id in images:
            del images[image_id]
        group = images.create_group(image_id)
        for name, array in datasets.items():
            arr = np.asarray(array)
            compression = "lzf" if arr.size >= 4096 else None
            group.create_dataset(name, data=arr, compression=compression)
        for key, value in (attrs or {}).items():
            group.attrs[key] = value
        group.attrs["complete"] = True
        self.file.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:  # what `weaksam inspect` checks the groups against
            self.file.attrs["image_count"] = len(self.file["images"])
        self.file.close()
        self._file = None
        if exc_type is None:
            self.partial.replace(self.path)


class StoreReader:
    """Read-only access to a finished store; ``store[image_id]`` gives that image's group in O(1)."""

    def __init__(self, path: str | Path, *, kind: str, config_digest: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"{self.path}: store not found")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise StoreError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        attrs = self.file.attrs
        if attrs.get("kind") != kind:
            raise StoreError(f"{self.path}: holds {attrs.get('kind')!r}, expected {kind!r}")
        if attrs.get("format_version") != STORE_FORMAT_VERSION:
            raise StoreError(
                f"{self.path}: format version {attrs.get('format_version')}, this weaksam reads {STORE_FORMAT_VERSION}"
            )
        if config_digest is not None and attrs.get("config_digest") != config_digest:
            raise StoreError(
                f"{self.path}: written under config digest {attrs.get('config_digest')}, the current "
                f"config gives {config_digest}; rerun the stage that writes it"
            )

    def attr(self, key: str) -> Any:
        value = self.file.attrs[key]
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.file["images"]

    def __getitem__(self, image_id: str) -> h5py.Group:
        try:
            return self.file["images"][image_id]
        except KeyError as exc:
            raise StoreError(f"{self.path}: no image {image_id!r}") from exc

    def image_ids(self) -> Iterator[str]:
        return iter(self.file["images"])

    def __len__(self) -> int:
        return len(self.file["images"])

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _int_attr(reader: StoreReader, key: str) -> int | None:
    value = reader.file.attrs.get(key)
    return None if value is None else int(value)


def merge_shards(
    shards: Sequence[str | Path], out: str | Path, *, kind: str, image_ids: Sequence[str]
) -> None:
    """Copy every image group of ``shards`` into ``out`` in the order of ``image_ids``; all shards
    must share kind and digest, and together hold exactly those images."""
    readers = [StoreReader(s, kind=kind) for s in shards]
    try:
        digests = {r.file.attrs["config_digest"] for r in readers}
        if len(digests) != 1:
            raise StoreError(f"shards were written under different configs: {sorted(digests)}")
        counts = {_int_attr(r, SHARD_COUNT) for r in readers}
        indices = [_int_attr(r, SHARD_INDEX) for r in readers]
        if counts != {None} and (counts != {len(shards)} or indices != list(range(len(shards)))):
            raise StoreError(
                f"{', '.join(str(s) for s in shards)} are shards {indices} of "
                f"{sorted(c for c in counts if c is not None)} (expected 0..{len(shards) - 1} of "
                f"{len(shards)}): rerun the shard jobs"
            )
        where = {i: r for r in readers for i in r.image_ids()}
        missing = [i for i in image_ids if i not in where]
        if missing:
            raise StoreError(f"shards lack {len(missing)} images, e.g. {missing[:3]}")
        out = Path(out)
        tmp = out.with_name(out.name + ".merging")
        with h5py.File(tmp, "w") as dst:
            for key, value in readers[0].file.attrs.items():
                if key not in (SHARD_INDEX, SHARD_COUNT):  # the same file for any sharding
                    dst.attrs[key] = value
            images = dst.create_group("images")
            for image_id in image_ids:
                where[image_id].file.copy(where[image_id][image_id], images, name=image_id)
            dst.attrs["image_count"] = len(image_ids)
        tmp.replace(out)
    finally:
        for r in readers:
            r.close()


def shard_slice(n: int, shard: int, shards: int) -> slice:
    """Contiguous slice of ``n`` items for ``shard`` of ``shards`` (sizes differ by at most 1)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} outside 0..{shards - 1}")
    base, extra = divmod(n, shards)
    start = shard * base + min(shard, extra)
    return slice(start, start + base + (1 if shard < extra else 0))
