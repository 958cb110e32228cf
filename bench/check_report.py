"""Open a Snakemake report in headless Chromium (Debian's `chromium`) and check that it renders:
the page's script must build the report (the rendered page, scripts aside, shows the navigation
and the three result categories, which the page source does not hold before its script runs),
every figure of the report_figures rule must be embedded, and a screenshot is saved.

Writes bench/results/report_check.json and bench/results/report_screenshot.png.

    apt-get install --no-install-recommends chromium   # once
    .venv/bin/python bench/check_report.py results/demo/report.html
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# drawn by the report's script (absent from the page before it runs)
RENDERED = ["Workflow", "Statistics", "1. Metrics", "2. Training", "3. Images"]
# embedded in the page as data
EMBEDDED = [
    "metrics.html",
    "recall.png",
    "losses.png",
    "gallery_cam.png",
    "gallery_proposals.png",
    "gallery_pgt.png",
    "gallery_masks.png",
    "gallery_detections.png",
    "gallery_instances.png",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium found: apt-get install --no-install-recommends chromium")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    url = args.report.resolve().as_uri()
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    base += ["--virtual-time-budget=15000", "--window-size=1400,1000"]
    start = time.perf_counter()
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    render_s = time.perf_counter() - start
    shot = args.out / "report_screenshot.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", url], capture_output=True, timeout=300, check=True
    )
    source = args.report.read_text()
    visible = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    before = re.sub(r"<script.*?</script>", "", source, flags=re.S)
    found = {name: name in visible and name not in before for name in RENDERED}
    found.update({name: name in source for name in EMBEDDED})
    result = {
        "report": str(args.report),
        "report_bytes": len(source),
        "rendered_dom_bytes": len(dom),
        "source_dom_bytes_ratio": round(len(dom) / max(1, len(source)), 3),
        "visible_text_bytes_before_and_after_rendering": [len(before), len(visible)],
        "found": found,
        "embedded_images": source.count("image/png"),
        "screenshot": str(shot.relative_to(REPO)) if shot.is_relative_to(REPO) else str(shot),
        "screenshot_bytes": shot.stat().st_size,
        "dump_dom_seconds": round(render_s, 1),
        "chromium": subprocess.run(
            [base[0], "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / "report_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    missing = [k for k, ok in found.items() if not ok]
    if missing:
        sys.exit(f"the report does not render or lacks: {missing}")


if __name__ == "__main__":
    main()
