"""A Markdown table of a quality harness result (bench/results/quality_<name>.json), for the
README's Measured section: every stage's figure (mean and spread over seeds) beside its upper
bound, the targets, and the wall time of each stage.

    .venv/bin/python bench/quality_table.py bench/results/quality_demo.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaksam.evaluation.quality import BOUND_ROWS  # noqa: E402

# figure key -> bound key in the same stage
BOUNDS = {figure: bound for _, figure, bound in BOUND_ROWS}


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "-"
    mean, spread = entry["mean"], entry.get("spread") or 0.0
    return f"{mean:.3f}" + (f" ± {spread / 2:.3f}" if spread else "")


def table(record: dict[str, Any]) -> str:
    summary = record["summary"]
    targets = record.get("targets", {})
    lines = [
        "| stage | figure | value (mean ± half the range over seeds) | upper bound | target |",
        "|---|---|---|---|---|",
    ]
    for key, entry in summary.items():
        stage, figure = key.rsplit(".", 1)  # wsod.mist.ap50_test -> wsod.mist, ap50_test
        if figure.startswith("bound_"):
            continue
        if entry.get("mean") is None:
            continue
        bound = summary.get(f"{stage}.{BOUNDS[figure]}") if figure in BOUNDS else None
        target = targets.get(key)
        goal = "" if not target else f"{target['target']}: {'met' if target['met'] else 'not met'}"
        shown = _fmt(bound)
        if figure == "recall50_test" and bound:
            shown += " (mask IoU of SAM from the ground-truth boxes)"
        lines.append(f"| {stage} | {figure} | {_fmt(entry)} | {shown} | {goal} |")
    walls = [r["wall_seconds"] for r in record["runs"] if r.get("wall_seconds")]
    resumed = any(r.get("resumed") for r in record["runs"])
    lines.append("")
    lines.append(
        f"seeds {record['seeds']}; wall seconds per run {walls}"
        + (" (resumed runs: only the jobs whose inputs changed)" if resumed else "")
        + f"; commit {record['machine'].get('commit', '?')}"
    )
    stages: dict[str, list[float]] = {}
    for run in record["runs"]:
        for stage, seconds in run["stage_seconds"].items():
            stages.setdefault(stage, []).append(seconds)
    lines.append(
        "stage seconds (per seed): "
        + "; ".join(f"{k} {', '.join(f'{v:.0f}' for v in vs)}" for k, vs in stages.items())
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("result", type=Path)
    print(table(json.loads(ap.parse_args().result.read_text())))


if __name__ == "__main__":
    main()
