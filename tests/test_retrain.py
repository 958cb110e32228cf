"""Retraining on pseudo ground truth: targets, flips, schedule, resume after a kill, TTA."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import build_tiny_shapes
from weaksam.config import AssetsConfig, RetrainConfig, RoiDropConfig
from weaksam.retrain.infer import coco_results, detect
from weaksam.retrain.stage import load_detector
from weaksam.retrain.train import (
    load_checkpoint,
    lr_factor,
    read_targets,
    sample,
    train_detector,
)

REPO = Path(__file__).resolve().parents[1]


def small_cfg(**kw: object) -> RetrainConfig:
    base = RetrainConfig(
        backbone="efficientnet_lite0",
        iterations=4,
        batch_size=2,
        images_per_forward=1,
        lr=0.005,
        warmup_iterations=2,
        lr_steps=(3,),
        train_sizes=(64, 80),
        max_size=128,
        test_size=64,
        test_max_size=128,
        checkpoint_every=2,
        roi_drop=RoiDropConfig(start_iter=2),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("retrain")
    build_tiny_shapes(root, num_trainval=4)
    return root


def _train(tiny: Path, out: Path, cfg: RetrainConfig, *, masks: bool = False, **kw: object) -> None:
    instances = json.loads((tiny / "out" / "gt" / "trainval.json").read_text())
    train_detector(
        read_targets(instances, masks=masks),
        ["circle", "triangle", "square", "star", "cross"],
        cfg,
        AssetsConfig(),
        masks=masks,
        out=out,
        work=out.with_suffix(".work.pt"),
        log_path=out.with_suffix(".tsv"),
        seed=0,
        pretrained=False,
        **kw,  # type: ignore[arg-type]
    )


def test_read_targets_and_flip(tiny: Path) -> None:
    instances = json.loads((tiny / "out" / "gt" / "trainval.json").read_text())
    items = read_targets(instances, masks=True)
    assert len(items) == 4 and all(i.segmentations is not None for i in items)
    item = next(i for i in items if len(i.boxes))
    image, target = sample(item, flip=False)
    flipped, ftarget = sample(item, flip=True)
    assert torch.equal(flipped, image.flip(-1))
    w = image.shape[-1]
    b, fb = target["boxes"][0].tolist(), ftarget["boxes"][0]
    assert fb.tolist() == pytest.approx([w - b[2], b[1], w - b[0], b[3]])
    assert torch.equal(ftarget["masks"], target["masks"].flip(-1))
    # the mask lies inside its box
    ys, xs = torch.nonzero(target["masks"][0], as_tuple=True)
    assert xs.min() >= b[0] - 1 and xs.max() <= b[2] and ys.min() >= b[1] - 1 and ys.max() <= b[3]


def test_lr_schedule_by_hand() -> None:
    cfg = RetrainConfig()  # warm-up 30 from 0.001, x0.1 at 6000 and 8000
    assert lr_factor(0, cfg) == pytest.approx(0.001)
    assert lr_factor(15, cfg) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(30, cfg) == 1.0 and lr_factor(6000, cfg) == pytest.approx(0.1)
    assert lr_factor(8000, cfg) == pytest.approx(0.01)


def test_train_logs_dropped_rois_and_detects(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "det.pt"
    cfg = small_cfg(roi_drop=RoiDropConfig(start_iter=2, thresh_cls=-1.0, thresh_reg=-1.0))
    _train(tiny, out, cfg)
    rows = [line.split("\t") for line in out.with_suffix(".tsv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    assert [int(r[3]) for r in rows[:2]] == [0, 0]  # before start_iter nothing is dropped
    assert all(int(r[3]) == int(r[4]) for r in rows[2:])  # thresholds -1: every foreground RoI
    model, rcfg, classes, masks = load_detector(out, torch.device("cpu"))
    assert not masks and len(classes) == 5
    image = torch.rand(3, 64, 64)
    dets = detect(model, image, replace(rcfg, score_thresh=0.0))
    entries = coco_results(dets, 7)
    assert all(e["image_id"] == 7 and 1 <= e["category_id"] <= 5 for e in entries)
    tta = detect(model, image, replace(rcfg, score_thresh=0.0, tta_sizes=(48, 64), max_per_image=5))
    assert len(tta["scores"]) <= 5 and (tta["boxes"][:, 2] <= 64.01).all()


class _FakeMaskRCNN(torch.nn.Module):
    """One detection per pass: a box over the image's left quarter with its mask, scored by the
    pass's size (so the largest size wins the NMS)."""

    def __init__(self) -> None:
        super().__init__()
        self.roi_heads = SimpleNamespace()
        self.transform = SimpleNamespace(min_size=(0,), max_size=0)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        x = images[0]
        h, w = x.shape[-2:]
        mask = torch.zeros(1, 1, h, w)
        mask[..., : w // 4] = 1.0
        flipped = bool(x[0, 0, 0] < x[0, 0, -1])  # the test image rises to the left
        box = torch.tensor([[0.0, 0.0, w / 4, float(h)]])
        score = torch.tensor([self.transform.min_size[0] / 1000 + (0.0001 if flipped else 0.0)])
        return [{"boxes": box, "scores": score, "labels": torch.tensor([1]), "masks": mask}]


def test_tta_keeps_each_detections_mask_mirrored_with_its_box() -> None:
    image = torch.linspace(1, 0, 40).expand(3, 20, 40).clone()  # (3, H=20, W=40)
    cfg = RetrainConfig(tta_sizes=(32, 64), tta_flip=True, max_per_image=10)
    dets = detect(_FakeMaskRCNN(), image, cfg)  # type: ignore[arg-type]
    # the four passes give the same box (the mirrored passes map back to x 30..40 instead):
    # NMS keeps one per distinct box, the best-scored: size 64, mirrored -> box [30, 0, 40, 20]
    assert dets["boxes"].tolist() == [[30.0, 0.0, 40.0, 20.0], [0.0, 0.0, 10.0, 20.0]]
    assert dets["masks"].shape == (2, 1, 20, 40)
    # each mask lies under its own box
    assert dets["masks"][0, 0, :, 30:].all() and not dets["masks"][0, 0, :, :30].any()
    assert dets["masks"][1, 0, :, :10].all() and not dets["masks"][1, 0, :, 10:].any()


def test_mask_rcnn_trains_and_gives_rle(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "mask.pt"
    _train(tiny, out, small_cfg(iterations=1), masks=True)
    model, rcfg, _, masks = load_detector(out, torch.device("cpu"))
    assert masks
    entries = coco_results(detect(model, torch.rand(3, 64, 64), replace(rcfg, score_thresh=0.0)), 1)
    assert entries and all("counts" in e["segmentation"] for e in entries)


KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from pathlib import Path
from types import SimpleNamespace
from tests.test_retrain import _train, small_cfg
torch.set_num_threads(1)
_train(Path({tiny!r}), Path({out!r}), small_cfg(iterations=16))
"""


def test_killed_training_resumes_from_its_last_checkpoint(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "killed.pt"
    work = out.with_suffix(".work.pt")
    code = KILL_SCRIPT.format(repo=str(REPO), tiny=str(tiny), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 180
    while not work.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert work.exists() and not out.exists(), "the job must be killed half way"
    killed_at = load_checkpoint(work)["step"]
    assert 0 < killed_at < 16
    cfg = small_cfg(iterations=16)
    _train(tiny, out, cfg)
    assert f"\n{killed_at + 1}\t" in out.with_suffix(".tsv").read_text()
    _train(tiny, tmp_path / "clean.pt", cfg)
    a, b = load_checkpoint(tmp_path / "clean.pt")["model"], load_checkpoint(out)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_kind_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"kind": "wsod", "format_version": 1, "x": np.zeros(1).tolist()}, bad)
    with pytest.raises(ValueError, match=r"is a WSOD head .*; expected a retrained Faster R-CNN"):
        load_checkpoint(bad)


def test_backbone_rate_and_a_frozen_backbone() -> None:
    from weaksam.retrain.train import build_from_config, param_groups

    cfg = small_cfg(lr=0.02, backbone_lr_mult=0.1)
    model = build_from_config(cfg, AssetsConfig(), 5, masks=False, pretrained=False)
    rest, body = param_groups(model, cfg)
    assert (rest["lr"], body["lr"]) == (0.02, pytest.approx(0.002))
    body_ids = {id(p) for p in model.backbone.body.parameters()}
    assert {id(p) for p in body["params"]} == body_ids
    assert not body_ids & {id(p) for p in rest["params"]}  # the reduction conv, RPN, heads
    frozen = build_from_config(
        small_cfg(backbone_lr_mult=0.0), AssetsConfig(), 5, masks=False, pretrained=False
    )
    assert not any(p.requires_grad for p in frozen.backbone.body.parameters())
    assert param_groups(frozen, small_cfg(backbone_lr_mult=0.0))[1]["params"] == []


def test_bf16_autocast_reaches_the_backbone_only() -> None:
    """Under bf16 autocast the backbone computes in bf16 but the RPN and RoI heads receive fp32
    features, so anchors, proposals and box targets keep full precision."""
    from weaksam.retrain.train import autocast_backbone_only, build_from_config

    torch.manual_seed(0)
    model = build_from_config(small_cfg(), AssetsConfig(), 3, masks=False, pretrained=False)
    seen: dict[str, torch.dtype] = {}
    body = model.backbone.body
    # hooks return None (update), so they only look
    conv = next(m for m in body.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.update(body=o.dtype))
    model.rpn.register_forward_pre_hook(
        lambda m, args: seen.update(rpn=next(iter(args[1].values())).dtype)
    )
    model.rpn.anchor_generator.register_forward_hook(
        lambda m, i, o: seen.update(anchors=o[0].dtype)
    )
    autocast_backbone_only(model, lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    model.train()
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    losses = model([torch.rand(3, 64, 64)], [target])
    assert seen == {"body": torch.bfloat16, "rpn": torch.float32, "anchors": torch.float32}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())


def test_tta_passes_take_their_own_size_cap() -> None:
    seen: list[tuple[int, int]] = []

    class Recorder(_FakeMaskRCNN):
        def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            seen.append((self.transform.min_size[0], self.transform.max_size))
            return super().forward(images)

    image = torch.linspace(1, 0, 40).expand(3, 20, 40).clone()
    cfg = RetrainConfig(test_size=688, test_max_size=4000, tta_sizes=(480, 1800), tta_flip=False)
    detect(Recorder(), image, replace(cfg, tta_max_size=2000))  # type: ignore[arg-type]
    # METHOD.md 10.1 (VOC); with TTA on, the plain test_size pass is not run (only the TTA
    # sizes are merged, as detectron2's test-time augmentation)
    assert seen == [(480, 2000), (1800, 2000)]
    seen.clear()
    detect(Recorder(), image, cfg)  # type: ignore[arg-type]
    assert seen == [(480, 4000), (1800, 4000)]  # unset: test_max_size
    seen.clear()
    detect(Recorder(), image, replace(cfg, tta_sizes=()))  # type: ignore[arg-type]
    assert seen == [(688, 4000)]


def test_read_targets_takes_partial_ground_truth_masks_only_when_asked() -> None:
    """Image 1 has every mask; image 2 none (VOC07-like); image 3 was read with its instance map
    and its second object has no pixels there. Pseudo masks must be complete (an error); the
    upper bound's ground truth trains on images 1 and 3, image 3 with its masked object only."""
    rle = {"size": [8, 8], "counts": "04000"}
    box = {"bbox": [0, 0, 4, 4], "category_id": 1, "iscrowd": 0}
    instances = {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in (1, 2)
        ] + [{"id": 3, "file_name": "3.jpg", "width": 8, "height": 8, "segmented": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, **box, "segmentation": rle},
            {"id": 2, "image_id": 2, **box},
            {"id": 3, "image_id": 3, **box, "segmentation": rle},
            {"id": 4, "image_id": 3, **box, "category_id": 2},
        ],
    }  # fmt: skip
    with pytest.raises(ValueError, match="image 2: an annotation has no segmentation"):
        read_targets(instances, masks=True)
    items = read_targets(instances, masks=True, partial_masks=True)
    assert [i.coco_id for i in items] == [1, 3]
    assert items[1].labels.tolist() == [1] and items[1].segmentations == [rle]
    assert [len(i.boxes) for i in read_targets(instances, masks=False)] == [1, 1, 2]
