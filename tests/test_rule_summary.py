"""The one-line summary every rule writes at the end of its log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd

from weaksam.logs import describe_output

REPO = Path(__file__).resolve().parents[1]


def test_describe_output_counts_what_each_kind_holds(tmp_path: Path) -> None:
    store = tmp_path / "a.h5"
    with h5py.File(store, "w") as f:
        for name in ("img1", "img2", "img3"):
            f.create_group(name)
    assert describe_output(store).startswith("a.h5 (3 images, ")
    instances = tmp_path / "gt.json"
    instances.write_text(json.dumps({"images": [{}, {}], "annotations": [{}, {}, {}]}))
    assert describe_output(instances).startswith("gt.json (2 images, 3 annotations, ")
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1}, {"image_id": 1}, {"image_id": 4}]))
    assert describe_output(dets).startswith("dets.json (3 detections on 2 images, ")
    table = tmp_path / "t.parquet"
    pd.DataFrame({"x": range(5)}).to_parquet(table)
    assert describe_output(table).startswith("t.parquet (5 rows, ")
    other = tmp_path / "model.pt"
    other.write_bytes(b"x" * 2500)
    assert describe_output(other) == "model.pt (2.5 kB)"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert describe_output(broken) == "broken.json (0.0 kB)"


SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from weaksam.logs import setup_rule_logging
setup_rule_logging({log!r}, rule="demo_rule", outputs=[{out!r}])
if {write}:
    Path({out!r}).write_text("[]")
"""


def test_summary_line_only_when_every_output_exists(tmp_path: Path) -> None:
    for write in (True, False):
        log, out = tmp_path / f"{write}.log", tmp_path / f"{write}.json"
        code = SCRIPT.format(repo=str(REPO), log=str(log), out=str(out), write=write)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        text = log.read_text()
        if write:
            assert (
                "demo_rule done in" in text and "wrote True.json (0 detections on 0 images" in text
            )
        else:
            assert "done in" not in text


def test_an_input_error_is_one_line_in_the_log_and_on_stderr(tmp_path: Path) -> None:
    """A reader's error (here a VOC split file that does not exist) ends the rule's process with
    status 1, its message alone on stderr and in the rule's log: no traceback, chained or not."""
    log = tmp_path / "dataset.log"
    code = f"""
from pathlib import Path
from weaksam.config import ConfigError, load_config
from weaksam.data.build import build_dataset
from weaksam.data.records import DatasetError
from weaksam.logs import input_errors, setup_rule_logging

setup_rule_logging({str(log)!r}, rule="dataset", outputs=[])
with input_errors(DatasetError, ConfigError):
    cfg = load_config({{"dataset": {{"name": "v", "format": "voc", "root": {str(tmp_path)!r}}}}})
    build_dataset(cfg.dataset, Path({str(tmp_path / "out")!r}))
"""
    (tmp_path / "Annotations").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("weaksam: error: split file ")
    assert "Traceback" not in run.stderr
    assert "ERROR weaksam: split file " in log.read_text()
