"""Per-image HDF5 stores: resume after a kill, digest checks, merge order, shard slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weaksam.h5store import ShardWriter, StoreError, StoreReader, merge_shards, shard_slice


def test_write_read_and_o1_lookup(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with ShardWriter(out, kind="cam", config_digest="d1", attrs={"classes": ["a", "b"]}) as w:
        w.write("img1", {"x": np.arange(3)})
        w.write("img2", {"x": np.arange(5)})
    assert out.exists() and not (tmp_path / "s.h5.partial").exists()
    with StoreReader(out, kind="cam", config_digest="d1") as r:
        assert r["img2"]["x"][()].tolist() == [0, 1, 2, 3, 4]
        assert r.attr("classes") == ["a", "b"] and len(r) == 2 and "img1" in r
        with pytest.raises(StoreError, match="no image 'nope'"):
            r["nope"]


def test_killed_writer_resumes_from_partial(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), ShardWriter(out, kind="cam", config_digest="d1") as w:
        w.write("a", {"x": np.ones(2)})
        raise RuntimeError("killed")
    assert not out.exists() and (tmp_path / "s.h5.partial").exists()
    with ShardWriter(out, kind="cam", config_digest="d1") as w:
        assert w.done_ids() == {"a"}
        w.write("b", {"x": np.zeros(2)})
    with StoreReader(out, kind="cam") as r:
        assert sorted(r.image_ids()) == ["a", "b"]


def test_partial_from_another_config_or_corrupt_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), ShardWriter(out, kind="cam", config_digest="old") as w:
        w.write("a", {"x": np.ones(2)})
        raise RuntimeError("killed")
    with ShardWriter(out, kind="cam", config_digest="new") as w:
        assert w.done_ids() == set()
    (tmp_path / "t.h5.partial").write_bytes(b"not hdf5")
    with ShardWriter(tmp_path / "t.h5", kind="cam", config_digest="x") as w:
        assert w.done_ids() == set()


def test_reader_rejects_other_kind_digest_and_garbage(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with ShardWriter(out, kind="cam", config_digest="d1") as w:
        w.write("a", {"x": np.ones(1)})
    with pytest.raises(StoreError, match="holds 'cam', expected 'proposals'"):
        StoreReader(out, kind="proposals")
    with pytest.raises(StoreError, match=r"config digest d1.*gives d2"):
        StoreReader(out, kind="cam", config_digest="d2")
    (tmp_path / "g.h5").write_text("garbage")
    with pytest.raises(StoreError, match="not a readable HDF5"):
        StoreReader(tmp_path / "g.h5", kind="cam")
    with pytest.raises(StoreError, match="not found"):
        StoreReader(tmp_path / "missing.h5", kind="cam")


def test_merge_follows_manifest_order_and_checks(tmp_path: Path) -> None:
    for name, ids in (("s0", ["c", "a"]), ("s1", ["b"])):
        with ShardWriter(tmp_path / f"{name}.h5", kind="cam", config_digest="d") as w:
            for i in ids:
                w.write(i, {"x": np.array([ord(i)])})
    merge_shards(
        [tmp_path / "s0.h5", tmp_path / "s1.h5"],
        tmp_path / "m.h5",
        kind="cam",
        image_ids=["a", "b", "c"],
    )
    with StoreReader(tmp_path / "m.h5", kind="cam", config_digest="d") as r:
        assert list(r.image_ids()) == ["a", "b", "c"] and r["b"]["x"][0] == ord("b")
    with pytest.raises(StoreError, match="lack 1 images"):
        merge_shards(
            [tmp_path / "s0.h5"], tmp_path / "m2.h5", kind="cam", image_ids=["a", "b", "c"]
        )


def test_shard_slice_partitions() -> None:
    # 10 items in 3 shards: sizes 4, 3, 3
    assert [shard_slice(10, s, 3) for s in range(3)] == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert shard_slice(2, 2, 3) == slice(2, 2)  # more shards than items: empty shard
    with pytest.raises(ValueError):
        shard_slice(5, 3, 3)
