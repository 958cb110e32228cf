"""Dataset readers and the manifest/ground-truth writer, including every bad-input case."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import voc_xml, write_image
from weaksam.config import DatasetConfig, load_config
from weaksam.data.build import build_dataset
from weaksam.data.manifest import read_manifest
from weaksam.data.masks import segmentation_to_mask
from weaksam.data.records import DatasetError
from weaksam.data.voc import parse_voc_xml, seeded_split


def voc_cfg(root: Path, **extra: object) -> DatasetConfig:
    return load_config(
        {"dataset": {"name": "t", "format": "voc", "root": str(root), **extra}}
    ).dataset


def skipped(out: Path) -> list[dict[str, str]]:
    with (out / "skipped.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_voc_one_based_boxes_become_exclusive_edges(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(voc_xml("a.jpg", (64, 48), [("dog", (1, 2, 10, 20), False)]))
    _, size, objs = parse_voc_xml(xml, one_based=True)
    # VOC pixel 1..10 inclusive is 10 pixels wide: edges 0..10.
    assert size == (64, 48) and objs[0].box == (0.0, 1.0, 10.0, 20.0)
    _, _, objs = parse_voc_xml(xml, one_based=False)
    assert objs[0].box == (1.0, 2.0, 10.0, 20.0)


def test_voc_devkit_manifest_and_gt(make_voc: Callable[..., Path], tmp_path: Path) -> None:
    root = make_voc(
        {
            "trainval": [("a", [("dog", (1, 1, 10, 10), False), ("cat", (5, 5, 30, 40), True)])],
            "test": [("b", [("cat", (2, 3, 12, 23), False)]), ("c", [])],
        }
    )
    out = tmp_path / "out"
    summary = build_dataset(voc_cfg(root), out)
    assert summary.classes == ("cat", "dog")  # sorted names when no class list is given
    m = read_manifest(out / "manifest.parquet")
    assert m.frame["image_id"].tolist() == ["a", "b", "c"]
    assert m.frame["coco_id"].tolist() == [1, 2, 3]
    assert m.frame["labels"].tolist() == [[0, 1], [0], []]  # c: no objects, allowed in test
    # a's cat is difficult only: not a class WSOD trains on with wsod.exclude_difficult_labels
    assert m.frame["clear_labels"].tolist() == [[1], [0], []]
    gt = json.loads((out / "gt" / "trainval.json").read_text())
    anns = {a["category_id"]: a for a in gt["annotations"]}
    assert anns[2]["bbox"] == [0.0, 0.0, 10.0, 10.0] and anns[2]["ignore"] == 0
    assert anns[1]["ignore"] == 1  # difficult kept as ignore
    assert [c["name"] for c in gt["categories"]] == ["cat", "dog"]
    assert skipped(out) == []


@pytest.mark.parametrize(
    ("objects", "reason"),
    [
        ([("bird", (1, 1, 10, 10), False)], "not in the class list"),
        ([("dog", (70, 1, 90, 10), False)], "empty or outside"),
        # VOC xmax = xmin is one pixel wide; xmax = xmin - 1 is empty (edges 4..4).
        ([("dog", (5, 5, 4, 20), False)], "empty or outside"),
        ([], "no labels"),
    ],
)
def test_bad_objects_fail_or_are_recorded(
    make_voc: Callable[..., Path], tmp_path: Path, objects: list, reason: str
) -> None:
    root = make_voc(
        {
            "trainval": [("a", objects), ("ok", [("dog", (1, 1, 9, 9), False)])],
            "test": [("b", [("dog", (1, 1, 9, 9), False)])],
        }
    )
    with pytest.raises(DatasetError, match=reason):
        build_dataset(voc_cfg(root, classes=["dog", "cat"]), tmp_path / "fail")
    out = tmp_path / "skip"
    build_dataset(voc_cfg(root, classes=["dog", "cat"], on_bad_image="skip"), out)
    rows = skipped(out)
    assert any(r["image_id"] == "a" and reason in r["reason"] for r in rows)
    frame = read_manifest(out / "manifest.parquet").frame
    assert "a" not in frame["image_id"].tolist()  # its only object dropped -> no labels -> skipped


def test_box_partly_outside_is_clipped_and_recorded(
    make_voc: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_voc(
        {
            "trainval": [("a", [("dog", (50, 40, 80, 60), False)])],
            "test": [("b", [("dog", (1, 1, 9, 9), False)])],
        }
    )
    out = tmp_path / "o"
    build_dataset(voc_cfg(root), out)
    gt = json.loads((out / "gt" / "trainval.json").read_text())
    assert gt["annotations"][0]["bbox"] == [49.0, 39.0, 15.0, 9.0]  # clipped to 64x48
    assert [r["action"] for r in skipped(out)] == ["clipped_box"]


def test_malformed_xml_truncated_image_small_image_duplicates(
    make_voc: Callable[..., Path], tmp_path: Path
) -> None:
    good = [("dog", (1, 1, 9, 9), False)]
    root = make_voc(
        {
            "trainval": [("a", good), ("bad", good), ("trunc", good), ("tiny", good)],
            "test": [("a", good), ("b", good)],
        }
    )
    (root / "Annotations" / "bad.xml").write_text("<annotation><object>")
    data = (root / "JPEGImages" / "trunc.jpg").read_bytes()
    (root / "JPEGImages" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    write_image(root / "JPEGImages" / "tiny.jpg", (20, 10))
    (root / "Annotations" / "tiny.xml").write_text(
        voc_xml("tiny.jpg", (20, 10), [("dog", (1, 1, 5, 5), False)])
    )
    with pytest.raises(DatasetError, match="malformed XML"):
        build_dataset(voc_cfg(root), tmp_path / "f")
    out = tmp_path / "s"
    build_dataset(voc_cfg(root, on_bad_image="skip"), out)
    reasons = {(r["image_id"], r["split"]): r["reason"] for r in skipped(out)}
    assert "malformed XML" in reasons[("bad", "trainval")]
    assert "cannot read image" in reasons[("trunc", "trainval")]
    assert "smaller than dataset.min_image_side=32" in reasons[("tiny", "trainval")]
    assert "duplicate image id" in reasons[("a", "test")]
    assert read_manifest(out / "manifest.parquet").frame["image_id"].tolist() == ["a", "b"]


def test_exif_rotated_image_with_stored_frame_annotation(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    raw = np.zeros((40, 60, 3), np.uint8)  # stored 60 wide, 40 high
    img = Image.fromarray(raw)
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 40 wide, 60 high
    (root / "JPEGImages").mkdir(parents=True)
    img.save(root / "JPEGImages" / "r.jpg", exif=exif.tobytes())
    write_image(root / "JPEGImages" / "t.jpg", (64, 48))
    (root / "Annotations").mkdir()
    # Box in the stored frame: VOC 1..10 x 1..5 -> edges x 0..10, y 0..5.
    (root / "Annotations" / "r.xml").write_text(
        voc_xml("r.jpg", (60, 40), [("dog", (1, 1, 10, 5), False)])
    )
    (root / "Annotations" / "t.xml").write_text(
        voc_xml("t.jpg", (64, 48), [("dog", (1, 1, 10, 5), False)])
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("r\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("t\n")
    out = tmp_path / "o"
    build_dataset(voc_cfg(root), out)
    frame = read_manifest(out / "manifest.parquet").frame
    assert (frame.loc[0, "width"], frame.loc[0, "height"]) == (40, 60)
    gt = json.loads((out / "gt" / "trainval.json").read_text())
    # Clockwise rotation maps (x, y) -> (H - y, x) with H = 40: x 0..10, y 0..5 -> x 35..40, y 0..10.
    assert gt["annotations"][0]["bbox"] == [35.0, 0.0, 5.0, 10.0]
    assert [r["action"] for r in skipped(out)] == ["rotated_annotation"]


@pytest.mark.parametrize(
    ("filename", "size", "message"),
    [
        ("a.jpg", (100, 100), "annotation says 100x100 but the image is 64x48"),
        ("../../../etc/passwd", (64, 48), "escapes the dataset root"),
    ],
)
def test_bad_annotation_header(
    make_voc: Callable[..., Path],
    tmp_path: Path,
    filename: str,
    size: tuple[int, int],
    message: str,
) -> None:
    good = [("dog", (1, 1, 9, 9), False)]
    root = make_voc({"trainval": [("a", good), ("b", good)], "test": [("c", good)]})
    (root / "Annotations" / "a.xml").write_text(voc_xml(filename, size, good))
    with pytest.raises(DatasetError, match=message):
        build_dataset(voc_cfg(root), tmp_path / "o")


def test_voc_segmentation_object_becomes_rle(make_voc: Callable[..., Path], tmp_path: Path) -> None:
    root = make_voc(
        {
            "trainval": [("a", [("dog", (1, 1, 10, 10), False), ("cat", (20, 20, 30, 30), False)])],
            "test": [("b", [("dog", (1, 1, 9, 9), False)])],
        }
    )
    inst = np.zeros((48, 64), np.uint8)
    inst[0:10, 0:10] = 1
    inst[19:30, 19:25] = 2
    inst[0, 0] = 255  # void pixel on the boundary, VOC style
    seg = Image.fromarray(inst)
    seg.putpalette([0, 0, 0] * 256)
    (root / "SegmentationObject").mkdir()
    seg.save(root / "SegmentationObject" / "a.png")
    out = tmp_path / "o"
    build_dataset(voc_cfg(root), out)
    anns = json.loads((out / "gt" / "trainval.json").read_text())["annotations"]
    assert anns[0]["area"] == 99.0 and anns[1]["area"] == 66.0
    mask = segmentation_to_mask(anns[1]["segmentation"], 48, 64)
    assert mask.sum() == 66 and mask[19:30, 19:25].all()
    images = json.loads((out / "gt" / "trainval.json").read_text())["images"]
    assert images[0]["segmented"] == 1  # its instance map was read
    assert "segmented" not in json.loads((out / "gt" / "test.json").read_text())["images"][0]


def test_voc_object_without_pixels_in_the_instance_map(
    make_voc: Callable[..., Path], tmp_path: Path
) -> None:
    """Object 2 has no pixel in a's map (all void): no segmentation, and the image is marked
    segmented so mask evaluation keeps it (the instance map has one instance)."""
    root = make_voc(
        {
            "trainval": [("a", [("dog", (1, 1, 10, 10), False), ("cat", (20, 20, 30, 30), False)])],
            "test": [("b", [("dog", (1, 1, 9, 9), False)])],
        }
    )
    inst = np.zeros((48, 64), np.uint8)
    inst[0:10, 0:10] = 1
    inst[19:30, 19:30] = 255
    seg = Image.fromarray(inst)
    seg.putpalette([0, 0, 0] * 256)
    (root / "SegmentationObject").mkdir()
    seg.save(root / "SegmentationObject" / "a.png")
    out = tmp_path / "o"
    build_dataset(voc_cfg(root), out)
    gt = json.loads((out / "gt" / "trainval.json").read_text())
    assert gt["images"][0]["segmented"] == 1
    assert "segmentation" in gt["annotations"][0] and "segmentation" not in gt["annotations"][1]


def test_loose_layout_seeded_split(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    for i in range(10):
        write_image(root / "images" / f"im{i}.jpg", (64, 48))
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"im{i}.xml").write_text(
            voc_xml(f"im{i}.jpg", (64, 48), [("dog", (1, 1, 9, 9), False)])
        )
    cfg = voc_cfg(
        root,
        voc={"layout": "loose", "images_dir": "images", "annotations_dir": "annotations"},
        test_fraction=0.3,
        split_seed=3,
    )
    out = tmp_path / "o"
    build_dataset(cfg, out)
    frame = read_manifest(out / "manifest.parquet").frame
    assert seeded_split(
        [f"im{i}" for i in range(10)], "trainval", "test", seed=3, test_fraction=0.3
    ) == dict(zip(frame["image_id"], frame["split"], strict=True))
    assert seeded_split(["a", "b"], "tr", "te", seed=0, test_fraction=0.01) in (
        {"a": "tr", "b": "te"},
        {"a": "te", "b": "tr"},
    )


def test_seeded_split_is_decided_per_image() -> None:
    """Adding images never moves the others (the split of an id depends on the id and the seed
    alone); the test share is the fraction on average; another seed gives another split."""
    ids = [f"{i:06d}" for i in range(2000)]
    full = seeded_split(ids, "tr", "te", seed=7, test_fraction=0.25)
    part = seeded_split(ids[:200], "tr", "te", seed=7, test_fraction=0.25)
    assert all(full[i] == part[i] for i in ids[:200])
    share = sum(v == "te" for v in full.values()) / len(full)
    assert abs(share - 0.25) < 0.03  # binomial sd sqrt(.25 * .75 / 2000) = 0.0097
    other = seeded_split(ids, "tr", "te", seed=8, test_fraction=0.25)
    assert sum(full[i] != other[i] for i in ids) > 500  # 2 * .25 * .75 * 2000 = 750 expected
    assert seeded_split(ids, "tr", "te", seed=7, test_fraction=0.0) == dict.fromkeys(ids, "tr")


def _coco_file(path: Path, images: list[dict], anns: list[dict]) -> None:
    cats = [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_coco_reader_polygons_rle_crowd(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    write_image(root / "img" / "p.jpg", (64, 48))
    write_image(root / "img" / "q.jpg", (64, 48))
    rle_mask = np.zeros((48, 64), np.uint8)
    rle_mask[10:20, 30:40] = 1
    counts, prev, run = [], 0, 0  # uncompressed RLE, column-major
    for v in rle_mask.flatten(order="F"):
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    images = [{"id": 7, "file_name": "p.jpg", "width": 64, "height": 48}]
    anns = [
        {
            "id": 1,
            "image_id": 7,
            "category_id": 1,
            "bbox": [0, 0, 10, 10],
            "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
            "area": 100,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 7,
            "category_id": 3,
            "bbox": [30, 10, 10, 10],
            "segmentation": {"size": [48, 64], "counts": counts},
            "area": 100,
            "iscrowd": 1,
        },
    ]
    _coco_file(root / "train.json", images, anns)
    _coco_file(root / "test.json", [{"id": 8, "file_name": "q.jpg", "width": 64, "height": 48}], [])
    cfg = load_config(
        {
            "dataset": {
                "name": "c",
                "format": "coco",
                "root": str(root),
                "coco": {
                    "train_json": "train.json",
                    "train_images": "img",
                    "test_json": "test.json",
                    "test_images": "img",
                },
            }
        }
    ).dataset
    out = tmp_path / "o"
    summary = build_dataset(cfg, out)
    assert summary.classes == ("person", "car")  # category id order
    gt = json.loads((out / "gt" / "trainval.json").read_text())
    a1, a2 = gt["annotations"]
    assert a1["category_id"] == 1 and a1["bbox"] == [0.0, 0.0, 10.0, 10.0]
    assert a2["category_id"] == 2 and a2["iscrowd"] == 1
    assert segmentation_to_mask(a2["segmentation"], 48, 64).sum() == 100
    assert read_manifest(out / "manifest.parquet").frame["labels"].tolist() == [[0, 1], []]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed JSON"),
        ('{"images": []}', "missing list 'annotations'"),
        (
            '{"images": [{"id": 1, "file_name": "p.jpg"}], "annotations": [{"image_id": 2, "category_id": 1, "bbox": [0,0,1,1]}], "categories": [{"id": 1, "name": "a"}]}',
            "unknown image_id 2",
        ),
        (
            '{"images": [{"id": 1, "file_name": "p.jpg"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0,0,1]}], "categories": [{"id": 1, "name": "a"}]}',
            r"bbox must be \[x, y, w, h\]",
        ),
    ],
)
def test_coco_malformed(tmp_path: Path, content: str, message: str) -> None:
    root = tmp_path / "coco"
    write_image(root / "p.jpg", (64, 48))
    (root / "a.json").write_text(content)
    cfg = load_config(
        {
            "dataset": {
                "name": "c",
                "format": "coco",
                "root": str(root),
                "coco": {
                    "train_json": "a.json",
                    "train_images": ".",
                    "test_json": "a.json",
                    "test_images": ".",
                },
            }
        }
    ).dataset
    with pytest.raises(DatasetError, match=message):
        build_dataset(cfg, tmp_path / "o")


def test_coco_unknown_category_is_recorded_in_skip_mode(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    write_image(root / "p.jpg", (64, 48))
    write_image(root / "q.jpg", (64, 48))
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5]},
    ]
    _coco_file(root / "tr.json", [{"id": 1, "file_name": "p.jpg", "width": 64, "height": 48}], anns)
    _coco_file(root / "te.json", [{"id": 2, "file_name": "q.jpg", "width": 64, "height": 48}], [])
    coco = {
        "train_json": "tr.json",
        "train_images": ".",
        "test_json": "te.json",
        "test_images": ".",
    }
    with pytest.raises(DatasetError, match="category_id 99"):
        build_dataset(
            load_config(
                {"dataset": {"name": "c", "format": "coco", "root": str(root), "coco": coco}}
            ).dataset,
            tmp_path / "f",
        )
    out = tmp_path / "s"
    build_dataset(
        load_config(
            {
                "dataset": {
                    "name": "c",
                    "format": "coco",
                    "root": str(root),
                    "coco": coco,
                    "on_bad_image": "skip",
                }
            }
        ).dataset,
        out,
    )
    # category 99 is unknown (its object dropped); "car" (id 3) has no objects: not a class
    assert [r["action"] for r in skipped(out)] == ["dropped_object", "dropped_class"]
    assert "'car' has no objects" in skipped(out)[1]["reason"]


def test_labels_csv_has_no_ground_truth(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for name in ("a", "b", "c", "d"):
        write_image(root / "images" / f"{name}.jpg", (64, 48))
    (root / "labels.csv").write_text(
        "image,labels,split\na.jpg,dog; cat,trainval\nb.jpg,cat,trainval\nc.jpg,,test\nd.jpg,dog,test\n"
    )
    cfg = load_config(
        {
            "dataset": {
                "name": "l",
                "format": "labels_csv",
                "root": str(root),
                "labels_csv": {"images_dir": "images"},
            }
        }
    ).dataset
    out = tmp_path / "o"
    build_dataset(cfg, out)
    frame = read_manifest(out / "manifest.parquet").frame
    assert frame["labels"].tolist() == [[0, 1], [0], [], [1]]  # classes sorted: cat, dog
    assert not (out / "gt").exists()


def test_labels_csv_bad_inputs(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    write_image(root / "a.jpg", (64, 48))
    write_image(root / "b.jpg", (64, 48))
    (root / "labels.csv").write_text("image,labels\na.jpg,\nb.jpg,dog\n")
    base = {
        "name": "l",
        "format": "labels_csv",
        "root": str(root),
        "split_seed": 0,
        "test_fraction": 0.5,
    }
    # Whichever of a / b lands in trainval: a has no labels, and "dog" is not in the list.
    with pytest.raises(DatasetError, match=r"no labels|not in the class list"):
        build_dataset(
            load_config({"dataset": {**base, "classes": ["cat"]}}).dataset, tmp_path / "o"
        )
    (root / "labels.csv").write_text("imagefile,labels\na.jpg,dog\n")
    with pytest.raises(DatasetError, match="header must have 'image' and 'labels'"):
        build_dataset(load_config({"dataset": base}).dataset, tmp_path / "o")


def test_coco_without_test_file_is_split_by_seed(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    images = []
    for i in range(4):
        write_image(root / "img" / f"i{i}.jpg", (64, 48))
        images.append({"id": i + 1, "file_name": f"i{i}.jpg", "width": 64, "height": 48})
    anns = [
        {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [0, 0, 9, 9]} for i in range(4)
    ]
    _coco_file(root / "all.json", images, anns)
    cfg = load_config(
        {
            "dataset": {
                "name": "c",
                "format": "coco",
                "root": str(root),
                "test_fraction": 0.5,
                "split_seed": 2,
                "coco": {"train_json": "all.json", "train_images": "img"},
            }
        }
    ).dataset
    out = tmp_path / "o"
    build_dataset(cfg, out)
    frame = read_manifest(out / "manifest.parquet").frame
    assert set(frame["split"]) == {"trainval", "test"}
    assert dict(zip(frame["image_id"], frame["split"], strict=True)) == seeded_split(
        [f"i{i}" for i in range(4)], "trainval", "test", seed=2, test_fraction=0.5
    )


def test_byte_order_mark_is_accepted_in_every_text_input(
    make_voc: Callable[..., Path], tmp_path: Path
) -> None:
    """Spreadsheet programs and some editors write a UTF-8 byte-order mark: it must not become
    part of the first id, header or JSON token."""
    bom = "\ufeff"
    root = make_voc({"trainval": [("a", [("dog", (1, 1, 10, 10), False)])], "test": [("b", [])]})
    split_file = root / "ImageSets" / "Main" / "trainval.txt"
    split_file.write_text(bom + split_file.read_text(), encoding="utf-8")
    build_dataset(voc_cfg(root), tmp_path / "voc_out")
    assert read_manifest(tmp_path / "voc_out" / "manifest.parquet").frame["image_id"].tolist() == [
        "a",
        "b",
    ]

    folder = tmp_path / "folder"
    for name in ("a", "b"):
        write_image(folder / f"{name}.jpg", (64, 48))
    (folder / "labels.csv").write_text(
        bom + "image,labels,split\na.jpg,dog,trainval\nb.jpg,cat,test\n", encoding="utf-8"
    )
    cfg = load_config(
        {"dataset": {"name": "l", "format": "labels_csv", "root": str(folder)}}
    ).dataset
    build_dataset(cfg, tmp_path / "csv_out")
    assert read_manifest(tmp_path / "csv_out" / "manifest.parquet").frame["labels"].tolist() == [
        [1],
        [0],
    ]

    coco = tmp_path / "coco"
    write_image(coco / "p.jpg", (64, 48))
    write_image(coco / "q.jpg", (64, 48))
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]
    images = [
        {"id": i, "file_name": f"{n}.jpg", "width": 64, "height": 48}
        for i, n in ((1, "p"), (2, "q"))
    ]
    _coco_file(coco / "a.json", images, anns)
    (coco / "a.json").write_text(bom + (coco / "a.json").read_text(), encoding="utf-8")
    cfg = load_config(
        {
            "dataset": {
                "name": "c",
                "format": "coco",
                "root": str(coco),
                "coco": {"train_json": "a.json", "train_images": "."},
            }
        }
    ).dataset
    assert build_dataset(cfg, tmp_path / "coco_out").classes == ("person",)  # car is unused


@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_coco_duplicate_image_id_is_an_error(tmp_path: Path, mode: str) -> None:
    """Two images with one id: their annotations cannot be told apart, so neither mode may keep
    one image and attach both images' boxes to it."""
    root = tmp_path / "coco"
    write_image(root / "p.jpg", (64, 48))
    write_image(root / "q.jpg", (64, 48))
    images = [{"id": 1, "file_name": "p.jpg"}, {"id": 1, "file_name": "q.jpg"}]
    _coco_file(
        root / "a.json", images, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]
    )
    cfg = load_config(
        {
            "dataset": {
                "name": "c",
                "format": "coco",
                "root": str(root),
                "on_bad_image": mode,
                "coco": {"train_json": "a.json", "train_images": ".", "test_json": "a.json",
                         "test_images": "."},
            }
        }
    ).dataset  # fmt: skip
    with pytest.raises(
        DatasetError, match=r"image id 1 is used twice \(by q.jpg and an earlier image\)"
    ):
        build_dataset(cfg, tmp_path / "o")


@pytest.mark.parametrize("fmt", ["voc_symlink", "coco", "labels_csv"])
def test_paths_out_of_the_root_are_skipped_and_recorded(
    make_voc: Callable[..., Path], tmp_path: Path, fmt: str
) -> None:
    """Whatever the format, an image path that leaves the dataset root (``..``, or a symlink to
    a file outside, found through the image id when the XML names no file) is refused with
    ``fail`` and recorded as a skipped image with ``skip``; the other images are kept."""
    outside = tmp_path / "elsewhere" / "x.jpg"
    write_image(outside, (64, 48))
    good = [("dog", (1, 1, 9, 9), False)]
    if fmt == "voc_symlink":
        root = make_voc({"trainval": [("a", good), ("b", good)], "test": [("c", good)]})
        (root / "JPEGImages" / "b.jpg").unlink()
        (root / "JPEGImages" / "b.jpg").symlink_to(outside)
        xml = voc_xml("", (64, 48), good).replace("<filename />", "")
        (root / "Annotations" / "b.xml").write_text(xml)
        base = {"name": "v", "format": "voc", "root": str(root), "classes": ["dog"]}
    elif fmt == "coco":
        root = tmp_path / "coco"
        for name in ("a", "c"):
            write_image(root / f"{name}.jpg", (64, 48))
        images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "../elsewhere/x.jpg"}]
        anns = [{"id": k, "image_id": k, "category_id": 1, "bbox": [0, 0, 5, 5]} for k in (1, 2)]
        _coco_file(root / "train.json", images, anns)
        _coco_file(root / "test.json", [{"id": 1, "file_name": "c.jpg"}], anns[:1])
        base = {
            "name": "c",
            "format": "coco",
            "root": str(root),
            "coco": {"train_json": "train.json", "train_images": ".", "test_json": "test.json",
                     "test_images": "."},
        }  # fmt: skip
    else:
        root = tmp_path / "folder"
        for name in ("a", "c"):
            write_image(root / f"{name}.jpg", (64, 48))
        (root / "labels.csv").write_text(
            "image,labels,split\na.jpg,dog,trainval\n../elsewhere/x.jpg,dog,trainval\nc.jpg,dog,test\n"
        )
        base = {"name": "l", "format": "labels_csv", "root": str(root)}
    with pytest.raises(
        DatasetError, match=r"escapes the dataset root|links out of the dataset root"
    ):
        build_dataset(load_config({"dataset": base}).dataset, tmp_path / "fail")
    out = tmp_path / "skip"
    build_dataset(load_config({"dataset": {**base, "on_bad_image": "skip"}}).dataset, out)
    rows = [r for r in skipped(out) if r["action"] != "dropped_class"]  # COCO's unused "car"
    assert [r["action"] for r in rows] == ["skipped_image"]
    assert "root" in rows[0]["reason"]
    frame = read_manifest(out / "manifest.parquet").frame
    assert sorted(frame["image_id"]) == ["a", "c"]


def test_class_names_that_differ_only_in_case_are_an_error_until_mapped(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for name in ("a", "b", "c", "d"):
        write_image(root / f"{name}.jpg", (64, 48))
    (root / "labels.csv").write_text(
        "image,labels,split\na.jpg,Circle,trainval\nb.jpg,circle,trainval\n"
        "c.jpg,STAR,test\nd.jpg,star,test\n"
    )
    base = {"name": "l", "format": "labels_csv", "root": str(root)}
    with pytest.raises(
        DatasetError, match=r"differ only in case.*'Circle', 'circle'; 'STAR', 'star'"
    ):
        build_dataset(load_config({"dataset": base}).dataset, tmp_path / "o")
    aliases = {"Circle": "circle", "STAR": "star"}
    out = tmp_path / "mapped"
    summary = build_dataset(
        load_config({"dataset": {**base, "class_aliases": aliases}}).dataset, out
    )
    assert summary.classes == ("circle", "star")
    assert read_manifest(out / "manifest.parquet").frame["labels"].tolist() == [[0], [0], [1], [1]]


def test_loose_voc_image_without_xml_is_in_skipped_tsv(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    for i in range(4):
        write_image(root / "images" / f"im{i}.jpg", (64, 48))
        if i < 3:
            (root / "annotations").mkdir(exist_ok=True)
            (root / "annotations" / f"im{i}.xml").write_text(
                voc_xml(f"im{i}.jpg", (64, 48), [("dog", (1, 1, 9, 9), False)])
            )
    voc = {"layout": "loose", "images_dir": "images", "annotations_dir": "annotations"}
    with pytest.raises(DatasetError, match=r"im3.*no annotation file .*im3.xml"):
        build_dataset(voc_cfg(root, voc=voc, test_fraction=0.3), tmp_path / "fail")
    out = tmp_path / "skip"
    build_dataset(voc_cfg(root, voc=voc, test_fraction=0.3, on_bad_image="skip"), out)
    assert [(r["image_id"], r["action"]) for r in skipped(out)] == [("im3", "skipped_image")]
    assert len(read_manifest(out / "manifest.parquet").frame) == 3


def test_wsod_trains_on_clear_labels_only_when_asked(
    make_voc: Callable[..., Path], tmp_path: Path
) -> None:
    from weaksam.wsod.stage import training_labels

    root = make_voc(
        {
            "trainval": [
                ("a", [("dog", (1, 1, 10, 10), False), ("cat", (5, 5, 30, 40), True)]),
                ("b", [("cat", (2, 3, 12, 23), True)]),  # difficult only: no class left
            ],
            "test": [("c", [("cat", (2, 3, 12, 23), False)])],
        }
    )
    out = tmp_path / "out"
    build_dataset(voc_cfg(root), out)
    m = read_manifest(out / "manifest.parquet")
    assert training_labels(m, "trainval", False)["labels"].tolist() == [[0, 1], [0]]
    # b stays in with every class negative (wetectron keeps such training images)
    assert training_labels(m, "trainval", True)["labels"].tolist() == [[1], []]
    # a manifest written before the column reads, but cannot give the clear labels
    table = pq.read_table(out / "manifest.parquet")
    pq.write_table(table.drop(["clear_labels"]), tmp_path / "old.parquet")
    old = read_manifest(tmp_path / "old.parquet")
    assert training_labels(old, "trainval", False)["labels"].tolist() == [[0, 1], [0]]
    with pytest.raises(DatasetError, match="clear_labels"):
        training_labels(old, "trainval", True)
