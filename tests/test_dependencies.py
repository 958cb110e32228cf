"""Rerun triggers: each rule's declared config keys, the digests and restricted configs built
from them, and the content / listing digests of tracked files."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from weaksam import dependencies as deps
from weaksam.config import WeaksamConfig, load_config, load_config_file
from weaksam.data import source_paths
from weaksam.tracking import content_digest, listing_digest

REPO = Path(__file__).resolve().parents[1]


def demo() -> WeaksamConfig:
    return load_config_file(REPO / "config" / "config.yaml")


def with_value(cfg: WeaksamConfig, key: str, value: Any) -> WeaksamConfig:
    """``cfg`` with one leaf key set (no validation: digests only look at values)."""
    head, _, rest = key.partition(".")
    section = getattr(cfg, head)
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: with_value(section, rest, value)})


def workflow_rules() -> dict[str, bool]:
    """Every rule of rules/*.smk -> whether its job runs a script (its own or inherited)."""
    scripted: dict[str, bool] = {}
    parents: dict[str, str] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        blocks = re.split(r"^(?=(?:rule|checkpoint|use rule) )", smk.read_text(), flags=re.M)
        for block in blocks:
            if m := re.match(r"(?:rule|checkpoint) (\w+):", block):
                scripted[m[1]] = "script:" in block
            elif m := re.match(r"use rule (\w+) as (\w+)", block):
                parents[m[2]] = m[1]
    for child, parent in parents.items():
        scripted[child] = scripted[parent]
    return scripted


# Which jobs a change of a key reruns first (what follows them reruns through their outputs):
# the table of what a user expects, key by key. Keys not listed rerun nothing.
FIRST_RERUN: dict[str, set[str]] = {
    "wsod.test_scales": {"wsod_detect", "wsod_detect_selective_search", "oracle_wsod_detect"},
    "wsod.test_nms": {"wsod_detect", "wsod_detect_selective_search", "oracle_wsod_detect"},
    "retrain.test_size": {"retrain_detect", "oracle_retrain_detect", "maskrcnn_detect", "predict"},
    "retrain.tta_sizes": {"retrain_detect", "oracle_retrain_detect", "maskrcnn_detect", "predict"},
    "evaluation.iou": {
        "wsod_metrics",
        "oracle_wsod_metrics",
        "retrain_metrics",
        "oracle_retrain_metrics",
        "maskrcnn_metrics",
        "dino_metrics",
        "mask2former_metrics",
        "pgt_quality",
        "oracle_pgt",
    },
    "cam.test_class_threshold": {"cam_shard"},  # the test split's only (below)
    "dataset.on_bad_image": {"dataset"},
    "prompts.top_k": {"prompts"},
    "wsod.lr": {"wsod_train", "wsod_train_selective_search", "oracle_wsod_train"},
    "pgt.t_keep": {"pgt", "pgt_quality", "oracle_pgt"},
    "retrain.dino.lr": {"dino_train"},
    # recorded in model.pt, not a training trigger
    "retrain.dino.tta_sizes": {"dino_detect", "predict_dino"},
    "wsis.mask2former.crop_size": {"mask2former_train"},
    "wsis.mask2former.test_size": {"mask2former_detect", "predict_mask2former"},
    "assets.resnet50": {
        "retrain_train",
        "retrain_train_no_roi_drop",
        "oracle_detector_train",
        "maskrcnn_train",
        "oracle_maskrcnn_train",
        "dino_train",
        "mask2former_train",
        "train_classifier",  # cam.backbone may be resnet50
        "cam_shard",
    },
}
NOTHING = [
    "cam.checkpoint_every",
    "wsod.checkpoint_every",
    "retrain.checkpoint_every",
    "retrain.dino.checkpoint_every",
    "wsis.mask2former.checkpoint_every",
    "compute.workers",
    "compute.device",
    "compute.shards",
    "compute.train_gpus",
    "compute.shard_threads",
    "compute.detector_threads",
    "sam.points_per_batch",
    "sam.mask_chunk",
    "sam.cpu_decoder",
    "sam.gpu_decoder",
    "sam.gpu_compile",
]


def rerun_first(cfg: WeaksamConfig, key: str) -> set[str]:
    """The rules of which some job's digest changes when ``key`` changes."""
    changed = with_value(cfg, key, "a changed value")
    out = set()
    for rule in deps.registry():
        for wildcards in ({"split": "trainval", "head": "mist"}, {"split": "test", "head": "oicr"}):
            if deps.rule_digest(cfg, rule, wildcards) != deps.rule_digest(changed, rule, wildcards):
                out.add(rule)
    return out


def test_every_config_key_is_read_by_a_rule_or_is_structure_or_performance() -> None:
    assert deps.undeclared_keys() == []
    assert len(deps.leaf_keys()) > 150


def test_every_rule_with_a_script_declares_its_keys_and_no_other_rule_does() -> None:
    rules = workflow_rules()
    assert len(rules) > 40
    scripted = {rule for rule, has_script in rules.items() if has_script}
    assert scripted == set(deps.registry())


@pytest.mark.parametrize("key", sorted(FIRST_RERUN))
def test_a_key_change_reruns_the_rules_expected(key: str) -> None:
    assert rerun_first(demo(), key) == FIRST_RERUN[key]


@pytest.mark.parametrize("key", NOTHING)
def test_a_performance_key_reruns_nothing(key: str) -> None:
    assert rerun_first(demo(), key) == set()


def test_every_key_reruns_exactly_the_rules_that_declare_it() -> None:
    """Every key in turn: the rules whose digest changes are those whose declaration names it
    (whole sections included), and none for structure and performance keys."""
    cfg = demo()
    for key in deps.leaf_keys():
        declaring = {
            rule
            for rule, spec in deps.registry().items()
            if key
            in deps.expand(spec.keys)
            | deps.expand(spec.test_split_keys)
            | deps.expand(k for keys in spec.head_keys.values() for k in keys)
        }
        if key in deps.expand(deps.STRUCTURE_KEYS):
            # names files (the split names, the results folder) or adds jobs: not a trigger
            assert declaring == set(), key
            continue
        assert rerun_first(cfg, key) == declaring, key
        if key in deps.expand(deps.PERFORMANCE_KEYS):
            assert declaring == set(), key


def test_split_and_head_keys_rerun_only_their_jobs() -> None:
    cfg = demo()
    changed = with_value(cfg, "cam.test_class_threshold", 0.25)
    test, train = {"split": "test"}, {"split": "trainval"}
    assert deps.rule_digest(cfg, "cam_shard", test) != deps.rule_digest(changed, "cam_shard", test)
    assert deps.rule_digest(cfg, "cam_shard", train) == deps.rule_digest(
        changed, "cam_shard", train
    )
    changed = with_value(cfg, "wsod.mist.top_fraction", 0.3)
    for head, differs in (("mist", True), ("oicr", False), ("wsddn", False)):
        before = deps.rule_digest(cfg, "wsod_train", {"head": head})
        assert (before != deps.rule_digest(changed, "wsod_train", {"head": head})) is differs


def test_a_rule_reading_an_undeclared_key_fails_naming_it() -> None:
    cfg = deps.restrict(demo(), "wsod_detect", {"split": "test", "head": "mist"})
    assert cfg.wsod.test_scales and cfg.proposals.min_side > 0  # declared
    assert cfg.compute.shards >= 1 and cfg.wsod.heads  # performance, structure
    with pytest.raises(
        deps.UndeclaredKeyError, match=r"rule wsod_detect reads config key wsod\.lr"
    ):
        _ = cfg.wsod.lr * 2
    for use in (
        lambda: cfg.wsod.lr > 0,
        lambda: bool(cfg.pgt.t_keep),
        lambda: f"{cfg.wsod.lr}",
        lambda: list(cfg.wsod.train_scales),
        lambda: dataclasses.asdict(cfg.wsod),  # a whole section: deep-copies every value
        lambda: hash(cfg.wsod.mist),
    ):
        with pytest.raises(deps.UndeclaredKeyError):
            use()
    # a data loader's worker processes get the config by pickle: still refused on use there
    worker = pickle.loads(pickle.dumps(cfg.wsod))
    assert worker.test_scales == cfg.wsod.test_scales
    with pytest.raises(deps.UndeclaredKeyError, match=r"wsod\.lr"):
        _ = worker.lr + 1
    # e.g. the classifier's batches (train_classifier does not read cam.scales)
    cam = deps.restrict(demo(), "train_classifier").cam
    assert pickle.loads(pickle.dumps(cam)).train_size == cam.train_size
    # what a checkpoint records: the declared keys only
    recorded = deps.declared_dict(deps.restrict(demo(), "wsod_train", {"head": "mist"}).wsod)
    assert "test_scales" in recorded and "lr" in recorded and recorded["oicr"] == {}
    assert recorded["mist"]["top_fraction"] == demo().wsod.mist.top_fraction


def test_unhashed_keys_are_readable_but_not_triggers() -> None:
    cfg = deps.restrict(demo(), "retrain_train", {"head": "mist"})
    assert cfg.retrain.test_size > 0  # recorded in model.pt
    changed = with_value(demo(), "retrain.test_size", 999)
    wc = {"head": "mist"}
    assert deps.rule_digest(demo(), "retrain_train", wc) == deps.rule_digest(
        changed, "retrain_train", wc
    )


def test_declarations_name_real_keys() -> None:
    with pytest.raises(ValueError, match="names no key"):
        deps.expand(["wsod.no_such_key"])
    assert deps.expand(["wsod.mist"]) == {
        "wsod.mist.top_fraction",
        "wsod.mist.seed_iou",
        "wsod.mist.fg_iou",
        "wsod.mist.loss_weights",
    }


def test_content_digest_follows_content_not_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"x": 1}')
    first = content_digest([a])
    os.utime(a, ns=(1, 1))  # rewritten, same bytes
    a.write_text('{"x": 1}')
    assert content_digest([a]) == first
    a.write_text('{"x": 2}')
    assert content_digest([a]) != first
    assert content_digest([b]) != content_digest([a])  # absent
    b.write_text('{"x": 2}')
    assert content_digest([b]) != content_digest([a])  # the name counts too


def test_listing_digest_sees_added_changed_and_deleted_files(tmp_path: Path) -> None:
    images = tmp_path / "JPEGImages"
    images.mkdir()
    for name in ("1.jpg", "2.jpg"):
        (images / name).write_bytes(b"x")
    before = listing_digest([images, tmp_path / "Annotations"])
    assert listing_digest([images, tmp_path / "Annotations"]) == before  # stable
    st = (images / "1.jpg").stat()
    os.utime(images / "1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched = listing_digest([images, tmp_path / "Annotations"])
    assert touched != before
    (images / "3.jpg").write_bytes(b"y")
    added = listing_digest([images, tmp_path / "Annotations"])
    (images / "3.jpg").unlink()
    assert len({before, touched, added, listing_digest([images])}) == 4
    assert listing_digest([images, tmp_path / "Annotations"]) == touched  # deleted again
    (tmp_path / "Annotations").mkdir()  # a folder that appears
    assert listing_digest([images, tmp_path / "Annotations"]) != touched


def test_source_paths_of_each_format() -> None:
    base = {"name": "x", "root": "/data"}
    voc = load_config({"dataset": {**base, "format": "voc"}}).dataset
    assert [str(p) for p in source_paths(voc)] == [
        "/data/JPEGImages",
        "/data/Annotations",
        "/data/ImageSets/Main/trainval.txt",
        "/data/ImageSets/Main/test.txt",
        "/data/SegmentationObject",
    ]
    coco = load_config(
        {
            "dataset": {
                **base,
                "format": "coco",
                "coco": {"train_json": "a.json", "train_images": "imgs"},
            }
        }
    ).dataset
    assert [str(p) for p in source_paths(coco)] == ["/data/a.json", "/data/imgs"]
    csv = load_config({"dataset": {**base, "format": "labels_csv"}}).dataset
    assert [str(p) for p in source_paths(csv)] == ["/data/labels.csv", "/data"]
    shapes = load_config({"dataset": {"name": "s", "format": "shapes"}}).dataset
    assert source_paths(shapes, "results/s/source") == [Path("results/s/source")]
