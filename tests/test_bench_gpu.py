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
