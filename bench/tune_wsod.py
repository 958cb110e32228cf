"""Choose the WSOD settings on the training split, never the test split.

For every variant (a mapping of config sections to keys, merged over the config files, e.g.
``{"wsod": {"output_stride": 8}, "proposals": {"max_area_fraction": 0.6}}``) one WSOD head is
trained on the training split's proposals exactly as the ``wsod_train`` rule trains it, run on
the same split as ``wsod_detect`` runs it, and judged there: CorLoc, and the precision / recall
of the pseudo ground truth built from those detections (adaptive and top-1), the figures the
quality harness reports for the training split. Results, with the machine and the seconds each
variant took, go to ``bench/results/tune_wsod_<dataset>.json`` (kept and extended).

    .venv/bin/snakemake results/shapes/proposals/trainval.h5 --profile profiles/local \
        --configfile config/examples/shapes.yaml                            # proposals first
    .venv/bin/python bench/tune_wsod.py config/examples/shapes.yaml \
        --variant base='{}' --variant cap='{"proposals": {"max_area_fraction": 0.6}}' \
        [--t-keep 0.3,0.5,0.7] [--keep-detections /tmp/dets]

A variant called ``results`` with no training judges the detections the workflow already wrote
(``results/<dataset>/wsod/<head>/detections_<train split>.json``): ``--variant results=``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import float_list, variant_record  # noqa: E402
from weaksam.config import (  # noqa: E402
    WeaksamConfig,
    load_config,
    merge_config,
    read_config_files,
)
from weaksam.evaluation.cocofiles import (  # noqa: E402
    detections_from_list,
    load_ground_truth,
)
from weaksam.evaluation.corloc import corloc  # noqa: E402
from weaksam.h5store import StoreReader  # noqa: E402
from weaksam.pgt.adaptive import PgtParams  # noqa: E402
from weaksam.pgt.stage import build_pgt, pgt_quality  # noqa: E402
from weaksam.proposals.store import PROPOSAL_STORE_KIND  # noqa: E402
from weaksam.wsod.stage import detect_stage, train_stage  # noqa: E402


def judge(
    cfg: WeaksamConfig, results: Path, detections: Path, t_keeps: tuple[float, ...] = ()
) -> dict[str, Any]:
    """CorLoc and PGT quality (both modes, and adaptive at each of ``t_keeps``) of a head's
    detections on the training split."""
    split = cfg.dataset.train_split
    gt_path = results / "gt" / f"{split}.json"
    gt = load_ground_truth(gt_path)
    dets = json.loads(detections.read_text())
    cl = corloc(gt, detections_from_list(dets, gt, source=str(detections)), iou=cfg.evaluation.iou)
    per_class: dict[str, dict[str, float]] = cl["per_class"]  # type: ignore[assignment]

    def pgt_figures(mode: Literal["adaptive", "top1"], t_keep: float) -> dict[str, float]:
        params = PgtParams(mode, t_keep, cfg.pgt.t_con, cfg.pgt.subtract_min)
        pgt = build_pgt(str(results / "manifest.parquet"), dets, split, params)
        q = pgt_quality(gt, pgt, iou=cfg.evaluation.iou)
        return {k: q[k] for k in ("precision", "recall", "boxes_per_image")}

    out: dict[str, Any] = {
        "corloc": cl["corloc"],
        "corloc_per_class": {k: v["corloc"] for k, v in per_class.items()},
        "pgt_adaptive": pgt_figures("adaptive", cfg.pgt.t_keep),
        "pgt_top1": pgt_figures("top1", cfg.pgt.t_keep),
    }
    if t_keeps:
        out["pgt_adaptive_by_t_keep"] = {str(t): pgt_figures("adaptive", t) for t in t_keeps}
    return out


def run_variant(
    raw: dict[str, Any],
    overrides: dict[str, Any],
    results: Path,
    head: str,
    threads: int,
    t_keeps: tuple[float, ...],
    keep: Path | None,
) -> dict[str, Any]:
    cfg = load_config(merge_config(raw, overrides))
    split = cfg.dataset.train_split
    store = results / "proposals" / f"{split}.h5"
    with StoreReader(store, kind=PROPOSAL_STORE_KIND) as reader:
        digest = reader.attr("config_digest")  # the store as the workflow wrote it
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, dets = Path(tmp) / "model.pt", Path(tmp) / "detections.json"
        train_stage(
            cfg,
            str(results / "manifest.parquet"),
            str(store),
            head,
            str(model),
            digest=digest,
            work=str(Path(tmp) / "checkpoint.pt"),
            train_log=str(Path(tmp) / "train_log.tsv"),
            threads=threads,
        )
        trained = time.perf_counter() - t0
        detect_stage(
            cfg, str(results / "manifest.parquet"), str(model), str(store), split, str(dets),
            digest=digest, threads=threads,
        )  # fmt: skip
        record = judge(cfg, results, dets, t_keeps)
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_bytes(dets.read_bytes())
    return {
        "overrides": overrides,
        **record,
        "train_seconds": trained,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+", help="config file(s), later ones override")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="name=JSON of config sections and keys; name= judges the workflow's detections",
    )
    ap.add_argument("--head", default=None, help="WSOD head (default: the config's first)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--t-keep",
        type=float_list,
        default=(),
        help="comma-separated pgt.t_keep values to judge the adaptive PGT at as well",
    )
    ap.add_argument(
        "--keep-detections", type=Path, default=None, help="folder for each variant's detections"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    raw = read_config_files([REPO / "config" / "config.yaml", *args.config])  # as the Snakefile
    cfg = load_config(raw)
    head = args.head or cfg.wsod.heads[0]
    results = REPO / "results" / cfg.dataset.name
    variants = dict(v.split("=", 1) for v in args.variant) or {"config": "{}"}
    out = args.out or REPO / "bench" / "results" / f"tune_wsod_{cfg.dataset.name}.json"
    record = variant_record(out, config=args.config, head=head)
    for name, text in variants.items():
        print(f"variant {name}: {text or 'the workflow detections'}", flush=True)
        if text:
            keep = args.keep_detections / f"{name}.json" if args.keep_detections else None
            result = run_variant(
                raw, json.loads(text), results, head, args.threads, args.t_keep, keep
            )
        else:
            detections = results / "wsod" / head / f"detections_{cfg.dataset.train_split}.json"
            result = {"detections": str(detections.relative_to(REPO))}
            result |= judge(cfg, results, detections, args.t_keep)
        record["variants"][name] = result
        summary = {k: result[k] for k in ("corloc", "pgt_adaptive", "pgt_top1")}
        print(f"variant {name}: {json.dumps(summary)}", flush=True)
        out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
