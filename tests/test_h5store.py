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


def _sharded(tmp_path: Path, count: int, ids: list[str]) -> list[Path]:
    """Stores of ``ids`` split over ``count`` shards as the shard jobs write them."""
    paths = []
    for index in range(count):
        path = tmp_path / f"of{count}" / f"shard-{index}.h5"
        with ShardWriter(
            path, kind="proposals", config_digest="d", attrs={"split": "t"}, shard=(index, count)
        ) as w:
            for image_id in ids[shard_slice(len(ids), index, count)]:
                value = int(image_id[3:])
                w.write(image_id, {"boxes": np.full((value + 1, 4), value, np.float32)})
        paths.append(path)
    return paths


def test_merged_store_is_the_same_file_for_any_number_of_shards(tmp_path: Path) -> None:
    ids = [f"img{i}" for i in range(7)]
    merged = []
    for count in (1, 2, 3):
        out = tmp_path / f"merged{count}.h5"
        merge_shards(_sharded(tmp_path, count, ids), out, kind="proposals", image_ids=ids)
        merged.append(out.read_bytes())
    assert merged[0] == merged[1] == merged[2]
    with StoreReader(tmp_path / "merged3.h5", kind="proposals") as r:
        assert "shard_index" not in r.file.attrs and "shard_count" not in r.file.attrs
        assert r["img6"]["boxes"].shape == (7, 4)


def test_merge_refuses_shards_of_another_sharding(tmp_path: Path) -> None:
    ids = [f"img{i}" for i in range(6)]
    two, three = _sharded(tmp_path, 2, ids), _sharded(tmp_path, 3, ids)
    with pytest.raises(StoreError, match=r"shards \[0, 2\] of \[2, 3\]"):
        merge_shards([two[0], three[2]], tmp_path / "m.h5", kind="proposals", image_ids=ids)
    with pytest.raises(StoreError, match=r"expected 0\.\.2 of 3"):
        merge_shards(
            [three[0], three[2], three[1]], tmp_path / "m.h5", kind="proposals", image_ids=ids
        )
    assert not (tmp_path / "m.h5").exists()


def test_partial_shard_of_another_sharding_is_not_resumed(tmp_path: Path) -> None:
    out = tmp_path / "shard-0.h5"
    with (
        pytest.raises(RuntimeError),
        ShardWriter(out, kind="cam", config_digest="d1", shard=(0, 2)) as w,
    ):
        w.write("a", {"x": np.ones(2)})
        raise RuntimeError("killed")
    with ShardWriter(out, kind="cam", config_digest="d1", shard=(0, 3)) as w:
        assert w.done_ids() == set()  # shard 0 of 3 holds other images than shard 0 of 2
