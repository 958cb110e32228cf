"""WSOD training and inference mechanics: resume after a kill, torchrun with gloo, DropBlock,
the VGG16-OICR backbone, detections, and images without proposals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import build_tiny_shapes
from weaksam.config import AssetsConfig, WsodConfig
from weaksam.data.manifest import read_manifest
from weaksam.h5store import ShardWriter, StoreError
from weaksam.launch import run_stage
from weaksam.models.backbones import vgg16_oicr
from weaksam.proposals.store import PROPOSAL_STORE_KIND, SOURCES
from weaksam.wsod.data import ProposalSource, cap_proposals, load_image, transform
from weaksam.wsod.infer import coco_results, detect, tta_scores
from weaksam.wsod.model import ConcreteDropBlock
from weaksam.wsod.stage import load_model, trainable_images
from weaksam.wsod.train import build_wsod_net, load_checkpoint, train_wsod

REPO = Path(__file__).resolve().parents[1]


def small_cfg(**kw: object) -> WsodConfig:
    base = WsodConfig(
        backbone="efficientnet_lite0",
        output_stride=16,
        roi_channels=8,
        fc_dim=16,
        pool_size=3,
        iterations=6,
        batch_size=2,
        lr=1e-3,
        warmup_iterations=2,
        lr_steps=(4,),
        train_scales=(48, 64),
        max_side=96,
        test_scales=(64,),
        checkpoint_every=2,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def write_store(path: Path, manifest_path: Path, split: str, *, empty: str | None = None) -> None:
    """Random proposals (seeded) for every image of ``split``; ``empty`` gets none."""
    frame = read_manifest(manifest_path).split(split)
    rng = np.random.default_rng(0)
    attrs = {"model": "test", "classes": ["x"], "sources": SOURCES, "split": split}
    with ShardWriter(path, kind=PROPOSAL_STORE_KIND, config_digest="d", attrs=attrs) as w:
        for row in frame.itertuples():
            n = 0 if row.image_id == empty else 12
            xy = rng.uniform(0, 40, (n, 2))
            wh = rng.uniform(10, 24, (n, 2))
            boxes = np.concatenate([xy, np.minimum(xy + wh, 64)], axis=1).astype(np.float32)
            w.write(
                str(row.image_id),
                {
                    "boxes": boxes,
                    "scores": np.ones(n, np.float32),
                    "source": np.zeros(n, np.uint8),
                },
            )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wsod")
    build_tiny_shapes(root, num_trainval=6)
    manifest = root / "out" / "manifest.parquet"
    write_store(root / "trainval.h5", manifest, "trainval")
    write_store(root / "test.h5", manifest, "test")
    return root


def _train(tiny: Path, out: Path, cfg: WsodConfig, head: str = "mist", **kw: object) -> None:
    m = read_manifest(tiny / "out" / "manifest.parquet")
    src = ProposalSource(tiny / "trainval.h5", digest="d", min_side=0, max_proposals=None)
    train_wsod(
        m.split("trainval"),
        list(m.classes),
        src,
        cfg,
        head,  # type: ignore[arg-type]
        AssetsConfig(),
        out=out,
        work=out.with_suffix(".work.pt"),
        log_path=out.with_suffix(".tsv"),
        seed=0,
        pretrained=False,
        **kw,  # type: ignore[arg-type]
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("head", ["wsddn", "oicr", "mist"])
def test_each_head_trains_and_detects(tiny: Path, tmp_path: Path, head: str) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "model.pt"
    _train(tiny, out, small_cfg(iterations=2), head)
    model, cfg, classes = load_model(out, torch.device("cpu"))
    assert model.head == head and classes == ["circle", "triangle", "square", "star", "cross"]
    log = out.with_suffix(".tsv").read_text().splitlines()
    assert log[0].startswith("step\tloss") and len(log) == 3
    m = read_manifest(tiny / "out" / "manifest.parquet")
    row = next(m.split("test").itertuples(index=False))
    src = ProposalSource(tiny / "test.h5", digest="d", min_side=0, max_proposals=None)
    _, image, rois, _, w, h = load_image(row, src, len(classes))
    dets = detect(model, image, rois, replace(cfg, max_per_image=7))
    assert 0 < len(dets.scores) <= 7
    assert (dets.boxes[:, [0, 2]] <= w).all() and (dets.boxes[:, [1, 3]] <= h).all()
    entries = coco_results(dets, int(row.coco_id))
    assert {e["category_id"] for e in entries} <= {1, 2, 3, 4, 5}


def test_refine_ramp_reaches_every_image_of_every_step(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # refine_ramp_iterations 4, 3 steps of 2 images: the loss of each image of 0-based step s
    # is built with weight (s + 1) / 4 -> 0.25, 0.25, 0.5, 0.5, 0.75, 0.75
    import weaksam.wsod.train as train_module

    seen: list[float] = []
    real = train_module.image_loss

    def spy(*args: object, refine_weight: float = 1.0, **kw: object) -> object:
        seen.append(refine_weight)
        return real(*args, refine_weight=refine_weight, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "image_loss", spy)
    torch.set_num_threads(1)
    _train(tiny, tmp_path / "model.pt", small_cfg(iterations=3, refine_ramp_iterations=4))
    assert seen == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75]


def test_resume_equals_uninterrupted(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = small_cfg()
    _train(tiny, tmp_path / "full.pt", cfg)
    split = tmp_path / "split.pt"
    _train(tiny, split, cfg, stop_after=3)  # checkpoints at step 2; stops after step 3
    assert not split.exists() and load_checkpoint(split.with_suffix(".work.pt"))["step"] == 2
    _train(tiny, split, cfg)  # resumes at step 2
    a, b = _weights(tmp_path / "full.pt"), _weights(split)
    assert all(torch.equal(a[k], b[k]) for k in a)


KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.test_wsod_train import _train, small_cfg
torch.set_num_threads(1)
_train(Path({tiny!r}), Path({out!r}), small_cfg(iterations=40, checkpoint_every=2))
"""


def test_killed_training_resumes_from_its_last_checkpoint(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "killed.pt"
    work = out.with_suffix(".work.pt")
    code = KILL_SCRIPT.format(repo=str(REPO), tiny=str(tiny), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 120
    while not work.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert work.exists() and not out.exists(), "the job must be killed half way"
    killed_at = load_checkpoint(work)["step"]
    assert 0 < killed_at < 40
    cfg = small_cfg(iterations=40, checkpoint_every=2)
    _train(tiny, out, cfg)
    log = out.with_suffix(".tsv").read_text()
    assert f"\n{killed_at + 1}\t" in log  # the rerun continued after the checkpoint
    _train(tiny, tmp_path / "clean.pt", cfg)
    a, b = _weights(tmp_path / "clean.pt"), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


TORCHRUN_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.test_wsod_train import _train, small_cfg
torch.set_num_threads(1)
_train(Path({tiny!r}), Path({out!r}), small_cfg(iterations=3, batch_size=4))
"""


def test_torchrun_two_gloo_processes_match_one(tiny: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "ddp.pt"
    script = tmp_path / "ddp.py"
    script.write_text(TORCHRUN_SCRIPT.format(repo=str(REPO), tiny=str(tiny), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*cmd, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _train(tiny, tmp_path / "single.pt", small_cfg(iterations=3, batch_size=4))
    a, b = _weights(tmp_path / "single.pt"), _weights(out)
    # Adam normalises each update to about lr (1e-3) whatever the gradient's size, so the
    # summation order of gloo against one process moves a weight whose gradient is near zero by
    # up to ~1e-6 (measured 1.5e-6); a wrong gradient sum would move it by ~1e-3.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_dropblock_mask_and_adversarial_training(tiny: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cdb = ConcreteDropBlock(4, tau=0.9, pool_size=7, block=3, temperature=0.01).train()
    feats = torch.rand(50, 4, 7, 7)
    torch.manual_seed(1)
    keep = cdb.mask(feats).detach()
    assert keep.shape == (50, 1, 7, 7) and set(keep.unique().tolist()) <= {0.0, 1.0}
    torch.manual_seed(1)  # the same Gumbel draw
    out = cdb(feats)
    kept = keep.sum()
    assert float(out.detach().sum()) == pytest.approx(
        float((feats * keep).sum() * keep.numel() / kept), rel=1e-5
    )
    assert torch.equal(cdb.eval()(feats), feats)  # identity at test time
    cfg = small_cfg(iterations=2)
    cfg = replace(cfg, dropblock=replace(cfg.dropblock, enabled=True, lr=1e-2))
    out_path = tmp_path / "cdb.pt"
    _train(tiny, out_path, cfg)
    trained = _weights(out_path)
    torch.manual_seed(0)  # as train_wsod does before building the model
    initial = build_wsod_net(cfg, AssetsConfig(), 5, "mist", pretrained=False).state_dict()
    for key in ("dropblock.shortcut.weight", "dropblock.body.0.weight"):
        assert not torch.equal(trained[key], initial[key]), f"{key} was not trained"


@pytest.mark.parametrize(
    ("block", "rows"),
    # one seed at (3, 3) of a 7 x 7 map; block 3: rows and columns 2-4 dropped (centred);
    # block 2: 3-4 (wetectron crops the extra row of an even window: the seed is the upper-left
    # cell); block 4: 2-5
    [(3, [2, 3, 4]), (2, [3, 4]), (4, [2, 3, 4, 5])],
)
def test_dropblock_block_around_a_seed(block: int, rows: list[int]) -> None:
    cdb = ConcreteDropBlock(4, tau=0.3, pool_size=7, block=block, temperature=0.01)
    seeds = torch.zeros(1, 1, 7, 7)
    seeds[0, 0, 3, 3] = 1
    keep = cdb.keep_from_seeds(seeds)
    expected = torch.ones(1, 1, 7, 7)
    expected[0, 0, rows[0] : rows[-1] + 1, rows[0] : rows[-1] + 1] = 0
    assert torch.equal(keep, expected)
    out = cdb.train()(torch.rand(5, 4, 7, 7))  # an even block no longer breaks the forward
    assert out.shape == (5, 4, 7, 7)


def test_dropblock_generator_forward_draws_afresh(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """METHOD.md 7.1: the generator's step follows "a fresh forward": new dropout and block
    draws, not a replay of the detector's; and the same draws when the run is repeated."""
    calls: list[tuple[int, torch.Tensor]] = []
    original = ConcreteDropBlock.mask

    def recording(self: ConcreteDropBlock, feats: torch.Tensor) -> torch.Tensor:
        seed = torch.initial_seed()
        keep = original(self, feats)
        calls.append((seed, keep.detach().clone()))
        return keep

    monkeypatch.setattr(ConcreteDropBlock, "mask", recording)
    cfg = small_cfg(iterations=1)  # one step of 2 images: 2 detector, then 2 generator forwards
    # block 1 at tau 0.9: each cell dropped with p = sigmoid(.) x 0.9, about 0.45
    cfg = replace(cfg, dropblock=replace(cfg.dropblock, enabled=True, tau=0.9, block_size=1))
    _train(tiny, tmp_path / "a.pt", cfg)
    first, calls[:] = list(calls), []
    _train(tiny, tmp_path / "b.pt", cfg)
    assert len(first) == 4
    assert [s for s, _ in first] == [s for s, _ in calls]  # reproducible
    for (seed_det, keep_det), (seed_gen, keep_gen) in zip(first[:2], first[2:], strict=True):
        assert seed_det != seed_gen
        assert keep_det.shape == keep_gen.shape  # the same image, its same proposals
        assert not torch.equal(keep_det, keep_gen)


def test_vgg16_oicr_structure() -> None:
    net = vgg16_oicr(pretrained=False)
    x = torch.rand(1, 3, 64, 96) * 255
    y = net(x)
    assert y.shape == (1, 512, 8, 12)  # stride 8
    assert (y < 0).any()  # no ReLU after conv5_3
    frozen = [p.requires_grad for p in net.body[:10].parameters()]
    assert frozen and not any(frozen)  # conv1 and conv2 frozen
    assert all(p.requires_grad for p in net.body[10:].parameters())


def test_transform_moves_rois_with_the_image() -> None:
    image = torch.zeros(3, 50, 100)
    image[:, 10:20, 0:30] = 255.0
    rois = torch.tensor([[0.0, 10.0, 30.0, 20.0]])
    x, r, (sx, sy) = transform(image, rois, 100, 1000, flip=True)
    assert x.shape == (3, 100, 200) and (sx, sy) == (2.0, 2.0)
    assert r.tolist() == [[140.0, 20.0, 200.0, 40.0]]
    assert float(x[0, 30, 170]) == pytest.approx(255.0) and float(x[0, 30, 20]) == 0.0


def test_images_without_proposals_fail_or_are_recorded(tiny: Path, tmp_path: Path) -> None:
    manifest = tiny / "out" / "manifest.parquet"
    frame = read_manifest(manifest).split("trainval")
    victim = str(frame["image_id"][1])
    write_store(tmp_path / "holes.h5", manifest, "trainval", empty=victim)
    src = ProposalSource(tmp_path / "holes.h5", digest="d", min_side=0, max_proposals=None)
    with pytest.raises(StoreError, match=victim):
        trainable_images(frame, src, on_bad_image="fail")
    kept, skipped = trainable_images(frame, src, on_bad_image="skip")
    assert skipped == [victim] and len(kept) == len(frame) - 1


def test_store_of_another_config_is_refused(tiny: Path) -> None:
    src = ProposalSource(tiny / "test.h5", digest="other", min_side=0, max_proposals=None)
    with pytest.raises(StoreError, match="digest"):
        src.boxes("x", 64, 64)


def test_checkpoint_of_another_kind_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"kind": "cam_classifier", "format_version": 1}, bad)
    with pytest.raises(
        ValueError,
        match=r"is the CAM classifier .*; expected a WSOD head \(wsod/\{head\}/model.pt\)$",
    ):
        load_checkpoint(bad)
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load"):
        load_checkpoint(bad)


def test_tta_maps_boxes_back_to_the_original_image(tiny: Path, tmp_path: Path) -> None:
    # OICR's boxes are the proposals themselves: after resizing to two scales, flipping and
    # mapping back, the averaged boxes must be the input proposals again.
    out = tmp_path / "oicr.pt"
    _train(tiny, out, small_cfg(iterations=1), "oicr")
    model, cfg, classes = load_model(out, torch.device("cpu"))
    cfg = replace(cfg, test_scales=(48, 80), test_flip=True)
    m = read_manifest(tiny / "out" / "manifest.parquet")
    row = next(m.split("test").itertuples(index=False))
    src = ProposalSource(tiny / "test.h5", digest="d", min_side=0, max_proposals=None)
    _, image, rois, _, _, _ = load_image(row, src, len(classes))
    scores, boxes = tta_scores(model, image, rois, cfg)
    assert scores.shape == (len(rois), 5) and boxes.shape == (len(rois), 5, 4)
    torch.testing.assert_close(boxes, rois[:, None, :].expand(-1, 5, -1), atol=1e-3, rtol=0)


def test_run_stage_under_torchrun_matches_one_process(tiny: Path, tmp_path: Path) -> None:
    """The launcher a training rule uses with compute.train_gpus > 1: two torchrun processes
    (gloo on CPU) write the same model as one, process 0 writes the rule's log, process 1 its
    own, and the launch spec is removed afterwards."""
    wsod = json.loads(
        json.dumps(asdict(small_cfg(iterations=2, batch_size=4, warmup_iterations=1, lr_steps=())))
    )
    raw = {
        "dataset": {
            "name": "t",
            "format": "shapes",
            "shapes": {"num_trainval": 6, "num_test": 2, "image_size": 64},
        },
        "proposals": {"min_side": 0},
        "wsod": wsod,
        "compute": {"device": "cpu"},
    }
    models = {}
    for n in (1, 2):
        work = tmp_path / f"p{n}"
        work.mkdir()
        log = work / "train.log"
        run_stage(
            "weaksam.wsod.stage:train_stage",
            raw,
            [
                str(tiny / "out" / "manifest.parquet"),
                str(tiny / "trainval.h5"),
                "wsddn",
                str(work / "model.pt"),
            ],
            {
                "digest": "d",
                "work": str(work / "checkpoint.pt"),
                "train_log": str(work / "train_log.tsv"),
                "threads": 1,
            },
            processes=n,
            log=str(log),
        )
        assert "wsod wsddn: 100%" in log.read_text()
        models[n] = _weights(work / "model.pt")
    assert (tmp_path / "p2" / "train.log.rank1").exists()
    assert not list((tmp_path / "p2").glob("*.launch.json"))
    # the same training up to the summation order of the gradients (gloo's sum of two halves
    # against one accumulation), whose rounding depends on the CPU's kernels: ~1e-5 on an
    # AVX-512 machine, where a wrong share or sum differs by the size of an update
    for k in models[1]:
        torch.testing.assert_close(models[1][k], models[2][k], rtol=1e-4, atol=1e-4)
    # the log shows the whole batch's loss and loss parts, not process 0's half of them
    logs = {}
    for n in (1, 2):
        header, *rows = (tmp_path / f"p{n}" / "train_log.tsv").read_text().splitlines()
        names = header.split("\t")
        logs[n] = [dict(zip(names, row.split("\t"), strict=True)) for row in rows]
    assert len(logs[1]) == len(logs[2]) == 2
    for one, two in zip(logs[1], logs[2], strict=True):
        assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-3)
        parts_one = dict(kv.split("=") for kv in one["parts"].split())
        parts_two = dict(kv.split("=") for kv in two["parts"].split())
        assert parts_one.keys() == parts_two.keys() and parts_one
        for name, value in parts_one.items():
            assert float(parts_two[name]) == pytest.approx(float(value), rel=1e-3, abs=2e-4)


def test_run_stage_rejects_a_bad_target_before_starting_processes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"package\.module:function"):
        run_stage("weaksam.wsod.stage", {}, [], {}, processes=2, log=str(tmp_path / "x.log"))
    with pytest.raises(AttributeError):
        run_stage("weaksam.wsod.stage:nope", {}, [], {}, processes=2, log=str(tmp_path / "x.log"))
    assert not list(tmp_path.iterdir())


def test_max_proposals_keeps_the_highest_scores_in_store_order() -> None:
    """Three grid boxes (predicted IoU 0.5, 0.4, 0.3) then two peak boxes (0.9, 0.35), cap 4:
    scores ranked 0.9 (p0), 0.5 (g0), 0.4 (g1), 0.35 (p1) | 0.3 (g2), so g2 goes and both peak
    boxes stay; the first four in store order would have dropped p1."""
    boxes = np.arange(20, dtype=np.float32).reshape(5, 4)
    scores = np.array([0.5, 0.4, 0.3, 0.9, 0.35], np.float32)
    assert cap_proposals(boxes, scores, 4).tolist() == boxes[[0, 1, 3, 4]].tolist()
    assert cap_proposals(boxes, scores, None) is boxes and cap_proposals(boxes, scores, 5) is boxes
    tied = np.ones(5, np.float32)  # ties: store order
    assert cap_proposals(boxes, tied, 2).tolist() == boxes[:2].tolist()
