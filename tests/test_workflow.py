"""Snakemake on a tiny generated dataset: full run, no-op rerun, partial rebuild, bad config."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import write_image
from weaksam.cli import main as cli_main
from weaksam.data.manifest import read_manifest
from weaksam.inspect import inspect_file
from weaksam.proposals.store import ProposalReader

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow

TINY = {
    "dataset": {
        "name": "tiny",
        "format": "shapes",
        "shapes": {"seed": 5, "num_trainval": 4, "num_test": 3, "image_size": 96},
    },
    "assets": {"cache_dir": str(REPO / "resources")},
    "cam": {
        "iterations": 3,
        "batch_size": 2,
        "train_size": 64,
        "warmup_iterations": 1,
        "checkpoint_every": 2,
    },
    "prompts": {"points_per_side": 4},
    "wsod": {
        "heads": ["mist"],
        "proposal_methods": ["weaksam", "selective_search"],
        "backbone": "efficientnet_lite0",
        "output_stride": 16,
        "roi_channels": 8,
        "fc_dim": 16,
        "iterations": 2,
        "batch_size": 2,
        "warmup_iterations": 1,
        "lr_steps": [],
        "train_scales": [64],
        "test_scales": [64],
        "checkpoint_every": 1,
    },
    "retrain": {
        "heads": ["mist"],
        "backbone": "efficientnet_lite0",
        "iterations": 2,
        "batch_size": 2,
        "images_per_forward": 2,
        "lr": 0.005,
        "warmup_iterations": 1,
        "lr_steps": [],
        "train_sizes": [64],
        "max_size": 128,
        "test_size": 64,
        "test_max_size": 128,
        "checkpoint_every": 1,
        "compare_without_roi_drop": True,
        "roi_drop": {"start_iter": 1},
        # the DINO-style DETR beside Faster R-CNN
        "detector": ["faster_rcnn", "dino"],
        "dino": {
            "backbone": "efficientnet_lite0",
            "iterations": 2,
            "batch_size": 2,
            "lr_steps": [],
            "train_sizes": [64],
            "max_size": 128,
            "hidden_dim": 32,
            "ffn_dim": 64,
            "decoder_layers": 1,
            "num_queries": 10,
            "num_denoising": 4,
            "test_size": 64,
            "test_max_size": 128,
            "checkpoint_every": 1,
        },
    },
    # Mask2Former beside Mask R-CNN
    "wsis": {
        "segmenter": ["mask_rcnn", "mask2former"],
        "mask2former": {
            "backbone": "efficientnet_lite0",
            "iterations": 2,
            "batch_size": 2,
            "lr_steps": [],
            "crop_size": 64,
            "hidden_dim": 32,
            "ffn_dim": 64,
            "encoder_layers": 1,
            "decoder_layers": 2,
            "num_queries": 5,
            "train_num_points": 64,
            "test_size": 64,
            "test_max_size": 128,
            "checkpoint_every": 1,
        },
    },
    "compute": {"shards": 2, "workers": 0},
}


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "1",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800)


def kill_when(workdir: Path, config: Path, marker: Path, timeout: float = 900.0) -> float:
    """Start the workflow as ``snakemake`` would, and ``kill -9`` it with all its jobs once
    ``marker`` exists. Returns the seconds it ran."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--configfile", str(config), "--cores", "1"]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while not marker.exists():
            assert proc.poll() is None, "the workflow ended before it could be killed"
            assert time.monotonic() - start < timeout, f"{marker} never appeared"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.monotonic() - start


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_full_run_noop_and_partial_rebuild(tmp_path: Path) -> None:
    new_images = tmp_path / "new_images"  # `predict.images`: two images and an unreadable file
    for name in ("p1.jpg", "p2.png"):
        write_image(new_images / name, (64, 64))
    (new_images / "broken.jpg").write_bytes(b"not an image")
    predict_cfg = {
        "images": str(new_images),
        "models": ["detector", "maskrcnn", "dino", "mask2former"],
        "score_threshold": 0.0,
    }
    cfg = write_config(tmp_path / "tiny.yaml", {**TINY, "predict": predict_cfg})
    run = snakemake(tmp_path, cfg)
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results" / "tiny"
    manifest = read_manifest(results / "manifest.parquet")
    assert manifest.frame["split"].value_counts().to_dict() == {"trainval": 4, "test": 3}
    gt = json.loads((results / "gt" / "test.json").read_text())
    assert len(gt["images"]) == 3 and gt["annotations"]
    assert (results / "logs" / "dataset.log").read_text().count("dataset tiny") == 1
    for split in ("trainval", "test"):
        prompts = pd.read_parquet(results / "prompts" / f"{split}.parquet")
        assert set(prompts["image_id"]) == set(manifest.split(split)["image_id"])
        assert (prompts["source"] == "grid").sum() == 16 * len(manifest.split(split))
        assert (
            json.loads((results / "prompts" / f"{split}.pointing.json").read_text())["images"] > 0
        )
        assert (results / "cam" / f"{split}_overlays.png").stat().st_size > 1000
    for prefix in ("proposals", "proposals/selective_search"):
        for split in ("trainval", "test"):
            recall = json.loads((results / prefix / f"{split}.recall.json").read_text())
            assert recall["num_images"] == len(manifest.split(split)) and recall["n"][-1] == "all"
            with ProposalReader(results / prefix / f"{split}.h5") as store:
                assert sorted(store.image_ids()) == sorted(manifest.split(split)["image_id"])
    metrics = json.loads((results / "cam" / "classifier_metrics.json").read_text())
    assert 0.0 <= metrics["test"]["map"] <= 1.0
    for wsod in ("wsod/mist", "wsod/selective_search/mist"):
        assert (results / wsod / "model.pt").is_file()
        assert not (results / wsod / "checkpoint.pt").exists()  # removed once the model is done
        test_ids = {img["id"] for img in gt["images"]}
        dets = json.loads((results / wsod / "detections_test.json").read_text())
        assert dets and {d["image_id"] for d in dets} <= test_ids
        m = json.loads((results / wsod / "metrics_test.json").read_text())
        assert 0.0 <= m["voc"]["map_area"] <= 1.0 and m["num_images"] == 3
        assert "corloc" in json.loads((results / wsod / "metrics_trainval.json").read_text())
    pgt = json.loads((results / "pgt" / "mist" / "pgt.json").read_text())
    train_ids = {r.coco_id for r in manifest.split("trainval").itertuples()}
    assert pgt["annotations"] and {a["image_id"] for a in pgt["annotations"]} <= train_ids
    assert all(0 <= a["score"] <= 1 for a in pgt["annotations"])
    quality = json.loads((results / "pgt" / "mist" / "quality.json").read_text())
    assert 0 <= quality["pgt"]["precision"] <= 1 and {"adaptive", "top1"} <= set(quality)
    for variant in ("mist", "mist/no_roi_drop"):
        detector = results / "detector" / variant
        assert (detector / "model.pt").is_file() and not (detector / "checkpoint.pt").exists()
        m = json.loads((detector / "metrics_test.json").read_text())
        assert m["num_images"] == 3 and "coco_bbox" in m
    log = (results / "detector" / "mist" / "train_log.tsv").read_text().splitlines()
    assert log[0].split("\t")[3] == "dropped_rois" and len(log) == 3
    masks = json.loads((results / "wsis" / "mist" / "masks.json").read_text())
    assert len(masks["annotations"]) == len(pgt["annotations"])
    assert all("counts" in a["segmentation"] and a["area"] > 0 for a in masks["annotations"])
    assert (
        0 <= json.loads((results / "wsis" / "mist" / "quality.json").read_text())["mean_iou"] <= 1
    )
    m = json.loads((results / "maskrcnn" / "mist" / "metrics_test.json").read_text())
    assert {"AP25", "AP50", "AP70", "AP75", "AP"} <= set(m["coco_segm"])
    # the transformer retrainers, with the same files as the R-CNNs
    for model, kind in (("dino", "coco_bbox"), ("mask2former", "coco_segm")):
        folder = results / model / "mist"
        assert (folder / "model.pt").is_file() and not (folder / "checkpoint.pt").exists()
        assert len((folder / "train_log.tsv").read_text().splitlines()) == 3
        m = json.loads((folder / "metrics_test.json").read_text())
        assert m["num_images"] == 3 and kind in m
    # the predict target: detections of both models on the new images, the broken one listed
    for model in ("detector", "maskrcnn", "dino", "mask2former"):
        pred = json.loads((results / "predict" / model / "mist" / "detections.json").read_text())
        assert [Path(i["file_name"]).name for i in pred["images"]] == ["p1.jpg", "p2.png"]
        assert [Path(x["path"]).name for x in pred["skipped"]] == ["broken.jpg"]
        assert len(list((results / "predict" / model / "mist" / "drawn").glob("*.png"))) == 2
    # every retrained model has its card, with the run's own figures
    for card in ("detector/mist", "detector/mist/no_roi_drop", "maskrcnn/mist"):
        text = (results / card / "model_card.md").read_text()
        assert "## Test metrics" in text and "dataset `tiny`" in text and "precision" in text
    # `weaksam show` draws every stage of a training image; `weaksam inspect` reads every artifact
    image = str(manifest.split("trainval")["image_id"][0])
    for stage in ("cam", "prompts", "proposals", "pgt", "masks", "detections"):
        png = tmp_path / f"{stage}.png"
        assert (
            cli_main(
                [
                    "show",
                    "--results",
                    str(results),
                    "--image",
                    image,
                    "--stage",
                    stage,
                    "-o",
                    str(png),
                ]
            )
            == 0
        )
        assert png.stat().st_size > 5000
    for detector in ("detector", "maskrcnn"):
        png = tmp_path / f"{detector}.png"
        args = [
            "show",
            "--results",
            str(results),
            "--image",
            str(manifest.split("test")["image_id"][0]),
        ]
        assert (
            cli_main([*args, "--stage", "detections", "--detector", detector, "-o", str(png)]) == 0
        )
    for artifact in (
        "manifest.parquet",
        "prompts/test.parquet",
        "cam/test.h5",
        "proposals/test.h5",
        "gt/test.json",
        "wsod/mist/model.pt",
        "wsod/mist/detections_test.json",
        "pgt/mist/pgt.json",
        "wsis/mist/masks.json",
        "detector/mist/model.pt",
        "maskrcnn/mist/model.pt",
    ):
        assert inspect_file(results / artifact).kind

    # the Snakemake report, with every table, curve and gallery
    html = results / "report.html"
    report = snakemake(tmp_path, cfg, "--report", str(html))
    assert report.returncode == 0, report.stderr[-3000:]
    text = html.read_text()
    figures = ["metrics.html", "recall.png", "losses.png"]
    figures += [f"gallery_{s}.png" for s in ("cam", "prompts", "proposals", "pgt", "masks")]
    figures += ["gallery_detections.png", "gallery_instances.png"]
    for name in figures:
        assert (results / "report" / name).stat().st_size > 1000, name
        assert name in text, name
    tables = (results / "report" / "metrics.html").read_text()
    titles = ("Each stage against its upper bound", "WSOD", "Pseudo ground truth")
    for title in (
        *titles,
        "Retrained Faster R-CNN",
        "Mask R-CNN",
        "DINO-style DETR",
        "Mask2Former",
    ):
        assert f"<h3>{title}</h3>" in tables
    # the stage-vs-bound table shows the stage figures even before the bounds are built
    assert tables.count("<table") == 10

    again = snakemake(tmp_path, cfg, "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    check_rebuilds(tmp_path, {**TINY, "predict": predict_cfg})

    # Determinism and resumption: a second full run with the same seed, in another folder,
    # killed (kill -9, Snakemake and its jobs) once the CAM classifier is written, then the same
    # command again, without --unlock, gives identical proposals, pseudo ground truth, pseudo
    # masks and metrics.
    second = tmp_path / "second"
    second.mkdir()
    killed = kill_when(second, cfg, second / "results" / "tiny" / "cam" / "classifier.pt")
    assert list((second / ".snakemake" / "locks").glob("*.lock")), "the kill left no lock"
    run = snakemake(second, cfg, "--rerun-incomplete")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "removed the lock of an interrupted run" in run.stderr, run.stderr[-3000:]
    assert not list((second / ".snakemake" / "weaksam-runs").glob("*.json"))  # released
    assert killed > 0
    other = second / "results" / "tiny"
    for store in ("proposals/trainval.h5", "proposals/test.h5", "cam/test.h5"):
        assert_same_store(results / store, other / store)
    same = [
        "pgt/mist/pgt.json",
        "wsis/mist/masks.json",
        "prompts/test.pointing.json",
        "cam/classifier_metrics.json",
    ]
    same += [str(p.relative_to(results)) for p in results.rglob("metrics_*.json")]
    same += [str(p.relative_to(results)) for p in results.rglob("*.recall.json")]
    assert len(same) > 12
    for name in same:
        assert comparable(results / name) == comparable(other / name), name


def dry_jobs(workdir: Path, data: dict) -> dict[str, int]:
    """The jobs a dry run with config ``data`` lists, per rule ({} when nothing would run)."""
    cfg = write_config(workdir / "changed.yaml", data)
    dry = snakemake(workdir, cfg, "--dry-run", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-3000:]
    if "Nothing to be done" in dry.stdout + dry.stderr:
        return {}
    jobs = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, re.M)}
    jobs.pop("total")
    return jobs


def run_jobs(workdir: Path, data: dict, *args: str) -> tuple[int, dict[str, int], str]:
    """Run with config ``data``: exit status, the jobs that ran per rule (the target rule
    `all` aside), and the log."""
    cfg = write_config(workdir / "changed.yaml", data)
    run = snakemake(workdir, cfg, *args)
    ran: dict[str, int] = {}
    for rule in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", run.stderr, re.M):
        if rule != "all":
            ran[rule] = ran.get(rule, 0) + 1
    return run.returncode, ran, run.stderr


def changed(base: dict, section: str, **values: object) -> dict:
    return {**base, section: {**base.get(section, {}), **values}}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_rebuilds(workdir: Path, base: dict) -> None:
    """The rebuild table: what each change reruns, on the finished tiny run in ``workdir``.
    Dry runs list the jobs that run for sure; where a checkpoint (the dataset, a merge) is
    among them, what follows it is decided once it is written, so those rows are run."""
    results = workdir / "results" / "tiny"
    wsod_test_keys = {
        "wsod_detect": 2,
        "wsod_detect_selective_search": 2,
        "wsod_metrics": 4,
        "pgt": 1,
        "pgt_quality": 1,
        "retrain_train": 1,
        "retrain_train_no_roi_drop": 1,
        "retrain_detect": 2,
        "retrain_metrics": 2,
        "dino_train": 1,
        "dino_detect": 1,
        "dino_metrics": 1,
        "predict_dino": 1,
        "wsis_masks_shard": 2,
        "wsis_masks_merge": 1,
        "model_card": 3,  # the Mask R-CNN card shows the PGT's quality too
        "predict": 1,
        "report_figures": 1,
        "all": 1,
    }
    retrain_test_keys = {
        "retrain_detect": 2,
        "maskrcnn_detect": 1,
        "retrain_metrics": 2,
        "maskrcnn_metrics": 1,
        "model_card": 3,
        "predict": 2,
        "report_figures": 1,
        "all": 1,
    }
    table = [
        (changed(base, "wsod", test_scales=[72]), wsod_test_keys),
        (changed(base, "wsod", test_nms=0.4), wsod_test_keys),
        (changed(base, "retrain", test_size=72), retrain_test_keys),
        (changed(base, "retrain", tta_sizes=[64, 72]), retrain_test_keys),
        (
            changed(base, "evaluation", iou=0.6),
            {
                "wsod_metrics": 4,
                "pgt_quality": 1,
                "retrain_metrics": 2,
                "maskrcnn_metrics": 1,
                "dino_metrics": 1,
                "mask2former_metrics": 1,
                "model_card": 3,
                "report_figures": 1,
                "all": 1,
            },
        ),
        # the transformer retrainers: a training key retrains, a test key re-detects
        (
            changed(base, "retrain", dino={**base["retrain"]["dino"], "lr": 0.001}),
            {"dino_train": 1, "dino_detect": 1, "dino_metrics": 1, "predict_dino": 1}
            | {"report_figures": 1, "all": 1},
        ),
        (
            changed(base, "retrain", dino={**base["retrain"]["dino"], "test_size": 72}),
            {"dino_detect": 1, "dino_metrics": 1, "predict_dino": 1, "report_figures": 1}
            | {"all": 1},
        ),
        (
            changed(base, "wsis", mask2former={**base["wsis"]["mask2former"], "crop_size": 72}),
            {"mask2former_train": 1, "mask2former_detect": 1, "mask2former_metrics": 1}
            | {"predict_mask2former": 1, "report_figures": 1, "all": 1},
        ),
        # the test split's CAMs; prompts and what follows them are decided after the merge
        (
            changed(base, "cam", test_class_threshold=0.3),
            {"cam_shard": 2, "cam_merge": 1, "all": 1},
        ),
        (
            changed(base, "wsod", lr=0.002),
            {**wsod_test_keys, "wsod_train": 1, "wsod_train_selective_search": 1},
        ),
        # keys that change no output, all at once
        (
            {
                **changed(
                    base, "compute", workers=1, device="cpu", shard_threads=1, detector_threads=1
                ),
                "cam": {**base["cam"], "checkpoint_every": 3},
                "wsod": {**base["wsod"], "checkpoint_every": 2},
                "retrain": {
                    **base["retrain"],
                    "checkpoint_every": 2,
                    "dino": {**base["retrain"]["dino"], "checkpoint_every": 2},
                },
                "wsis": {
                    **base["wsis"],
                    "mask2former": {**base["wsis"]["mask2former"], "checkpoint_every": 2},
                },
                "sam": {"points_per_batch": 7, "mask_chunk": 3, "cpu_decoder": "torch"},
            },
            {},
        ),
        # the dataset rule reruns; the rest is decided by what it writes (below)
        (changed(base, "dataset", on_bad_image="skip"), {"dataset": 1, "all": 1}),
        # the first shard and merge jobs; the SAM shards (after the prompts, after the CAMs)
        # and what reads the merged files are decided once the merges are written (the run
        # below)
        (
            changed(base, "compute", shards=3),
            {
                "cam_shard": 6,
                "cam_merge": 2,
                "selective_search_shard": 6,
                "selective_search_merge": 2,
                "all": 1,
            },
        ),
    ]
    for data, expected in table:
        got = dry_jobs(workdir, data)
        assert got == expected, (got, expected)

    tracked = [results / "manifest.parquet", results / "gt" / "trainval.json"]
    tracked += [results / f"{kind}/{s}.h5" for kind in ("cam", "proposals") for s in SPLITS]
    tracked.append(results / "wsis" / "mist" / "masks.json")
    before = {p: sha(p) for p in tracked}

    # on clean data, on_bad_image changes nothing: the dataset rule alone runs
    code, ran, log = run_jobs(workdir, changed(base, "dataset", on_bad_image="skip"))
    assert code == 0 and ran == {"dataset": 1}, (ran, log[-2000:])
    assert dry_jobs(workdir, base) == {"dataset": 1, "all": 1}  # and back
    code, ran, _ = run_jobs(workdir, base)
    assert code == 0 and ran == {"dataset": 1}

    # an image touched: the dataset rule reads it again, nothing follows
    source = results / "source"
    image = sorted((source / "JPEGImages").glob("*.jpg"))[0]
    os.utime(image)
    code, ran, _ = run_jobs(workdir, base)
    assert code == 0 and ran == {"dataset": 1}

    # a class changed in an annotation file: the dataset rule, then whatever reads the manifest
    xml = source / "Annotations" / f"{image.stem}.xml"
    text = xml.read_text()
    name = re.search(r"<name>(\w+)</name>", text)[1]
    other = next(c for c in ("circle", "triangle", "square", "star", "cross") if c != name)
    xml.write_text(text.replace(f"<name>{name}</name>", f"<name>{other}</name>", 1))
    code, ran, _ = run_jobs(workdir, base, "--until", "dataset")
    assert code == 0 and ran == {"dataset": 1}
    assert sha(results / "manifest.parquet") != before[results / "manifest.parquet"]
    # the first wave (the rest follows the merges it leads to)
    jobs = dry_jobs(workdir, base)
    assert {"train_classifier", "cam_shard", "cam_merge", "selective_search_shard"} <= set(jobs)
    xml.write_text(text)  # and back: the same manifest as before, nothing else reruns
    code, ran, _ = run_jobs(workdir, base)
    assert code == 0 and ran == {"dataset": 1}

    # an image deleted: with on_bad_image fail the dataset rule stops and keeps its files
    data = image.read_bytes()
    image.unlink()
    code, ran, log = run_jobs(workdir, base)
    assert code != 0 and ran == {"dataset": 1} and "Restored previous version" in log
    assert all(sha(p) == before[p] for p in tracked)
    # with skip, the image is left out and said so: the manifest changes
    code, ran, _ = run_jobs(
        workdir, changed(base, "dataset", on_bad_image="skip"), "--until", "dataset"
    )
    assert code == 0 and image.stem in (results / "skipped.tsv").read_text()
    assert image.stem not in set(read_manifest(results / "manifest.parquet").frame["image_id"])
    image.write_bytes(data)
    code, ran, _ = run_jobs(workdir, base)
    assert code == 0 and ran == {"dataset": 1}

    # a failed merge keeps the good file
    shard = results / "cam" / "test" / "shard-1.h5"
    shard.write_bytes(b"not a store")
    code, ran, log = run_jobs(workdir, base)
    assert code != 0 and ran == {"cam_merge": 1}, (ran, log[-2000:])
    assert sha(results / "cam" / "test.h5") == before[results / "cam" / "test.h5"]
    shard.unlink()  # a shard is only needed while its merge has to run
    code, ran, _ = run_jobs(workdir, base)
    assert code == 0 and ran == {}, ran

    # another number of shards (2 -> 1 -> 3): shard and merge jobs only, the same merged files
    for shards in (1, 3):
        code, ran, log = run_jobs(workdir, changed(base, "compute", shards=shards))
        assert code == 0, log[-3000:]
        assert ran == {
            "cam_shard": 2 * shards,
            "cam_merge": 2,
            "proposals_shard": 2 * shards,
            "proposals_merge": 2,
            "selective_search_shard": 2 * shards,
            "selective_search_merge": 2,
            "wsis_masks_shard": shards,
            "wsis_masks_merge": 1,
        }, ran
        assert {p: sha(p) for p in tracked} == before
        assert dry_jobs(workdir, changed(base, "compute", shards=shards)) == {}


SPLITS = ("trainval", "test")


def comparable(path: Path) -> object:
    """A JSON file's content without the absolute image paths (the two runs' folders differ)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        data["images"] = [{k: v for k, v in i.items() if k != "file_name"} for i in data["images"]]
    return data


def assert_same_store(a: Path, b: Path) -> None:
    """Two HDF5 stores hold the same datasets with the same values (attributes aside, which
    record file paths and times)."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a: list[str] = []
        fa.visit(names_a.append)
        names_b: list[str] = []
        fb.visit(names_b.append)
        assert names_a == names_b
        for name in names_a:
            if isinstance(fa[name], h5py.Dataset):
                np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=name)


def test_bad_config_fails_before_anything_runs(tmp_path: Path) -> None:
    bad = {"dataset": {**TINY["dataset"], "shapes": {"num_tset": 3}}}
    run = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", bad), "--dry-run")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "dataset.shapes" in output and "'num_tset' was unexpected" in output
    assert not (tmp_path / "results").exists()
