"""Mask R-CNN of a finished demo run retrained on the same pseudo masks with a given number of
CPU threads, then detected and evaluated: how much of the stage's spread is float-reduction order
(the thread count) rather than the inputs. Writes to /tmp/mask_thr{N}/ and prints mask AP50.

    .venv/bin/python bench/retrain_threads.py 2     # results/demo must be finished
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaksam.config import load_config_file  # noqa: E402
from weaksam.evaluation.stage import metrics_stage  # noqa: E402
from weaksam.retrain.stage import detect_stage, train_stage  # noqa: E402


def main() -> None:
    threads = int(sys.argv[1])
    out = Path(f"/tmp/mask_thr{threads}")
    out.mkdir(exist_ok=True)
    cfg = load_config_file(REPO / "config" / "config.yaml")
    results = REPO / "results" / cfg.dataset.name
    manifest = str(results / "manifest.parquet")
    t = time.perf_counter()
    train_stage(
        cfg,
        manifest,
        str(results / "wsis" / "mist" / "masks.json"),
        str(out / "model.pt"),
        masks=True,
        train_log=str(out / "log.tsv"),
        threads=threads,
        roi_drop=cfg.wsis.roi_drop,
    )
    detect_stage(
        cfg, manifest, str(out / "model.pt"), "test", str(out / "det.json"), threads=threads
    )
    metrics_stage(
        cfg, str(results / "gt" / "test.json"), str(out / "det.json"), str(out / "m.json")
    )
    m = json.loads((out / "m.json").read_text())
    print(
        f"threads {threads}: mask AP50 {m['coco_segm']['AP50']:.4f}, box AP50 "
        f"{m['voc']['map11']:.4f}, {time.perf_counter() - t:.0f} s"
    )


if __name__ == "__main__":
    main()
