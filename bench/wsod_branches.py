"""Which branch of a trained WSOD head localises each class, and when in training it learnt to.

A MIST / OICR head scores proposals with WSDDN's MIL branch (phi, the image-level training
signal) and K refinements, each trained on pseudo-labels taken from the branch before it; the
detector's output is the refinements' mean. When one class's top box is wrong in every image,
this says where and when it went wrong: in WSDDN (the MIL branch found no object of the class),
or only in the refinements (they followed a wrong first choice and never corrected it).

    # the workflow's trained head
    .venv/bin/python bench/wsod_branches.py config/config.yaml --results results/demo_seed2
    # the same training again (as the wsod_train rule runs it, with the config's seed), judged
    # at the given steps: checkpoints every 25 steps, resumed run by run (bit for bit the same
    # training as one uninterrupted run)
    .venv/bin/python bench/wsod_branches.py config/config.yaml SEED_OVERLAY \
        --results results/demo_seed2 --trajectory 25,50,100,200,400,800 --out FILE

One pass per image at the config's first test scale, no flip, no box regression: each branch's
top-scoring proposal per labelled class, counted correct at IoU >= ``evaluation.iou`` with a
ground-truth box of that class (CorLoc's rule); per branch and class: that CorLoc, the mean
area of the top box over the image's, and what the top box is on (its class's object, another
class's, part of an object, or no object: IoU <= 0.1 with every object).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402
from weaksam.config import WeaksamConfig, load_config, merge_config, read_config_files  # noqa: E402

KINDS = ("own_class", "other_class", "part", "no_object")


def proposal_source(cfg: WeaksamConfig, results: Path, split: str) -> Any:
    from weaksam.h5store import StoreReader
    from weaksam.proposals.store import PROPOSAL_STORE_KIND
    from weaksam.wsod.data import ProposalSource

    store = results / "proposals" / f"{split}.h5"
    with StoreReader(store, kind=PROPOSAL_STORE_KIND) as reader:
        digest = reader.attr("config_digest")  # the store as the workflow wrote it
    return ProposalSource(
        str(store),
        digest=digest,
        min_side=cfg.proposals.min_side,
        max_proposals=cfg.wsod.max_proposals,
        max_area_fraction=cfg.proposals.max_area_fraction,
    ), digest


def branch_corloc(cfg: WeaksamConfig, results: Path, split: str, model_path: Path) -> dict:
    """CorLoc and top-box area per branch and class of the head at ``model_path``."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import box_iou

    from weaksam.data.manifest import read_manifest
    from weaksam.wsod.data import load_image, transform
    from weaksam.wsod.stage import load_model

    model, wcfg, classes = load_model(model_path, torch.device("cpu"))
    if model.head == "wsddn":
        raise SystemExit("a WSDDN head has one branch; this compares a MIST / OICR head's branches")
    proposals, _ = proposal_source(cfg, results, split)
    gt = json.loads((results / "gt" / f"{split}.json").read_text())
    # per image: its objects' XYXY boxes and 0-based classes
    every_object: dict[int, list[tuple[list[float], int]]] = defaultdict(list)
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        every_object[int(ann["image_id"])].append(([x, y, x + w, y + h], ann["category_id"] - 1))

    branches = ["wsddn", *(f"ref{i + 1}" for i in range(len(model.refine)))]
    hits: dict[str, dict[str, list[bool]]] = {b: defaultdict(list) for b in branches}
    areas: dict[str, dict[str, list[float]]] = {b: defaultdict(list) for b in branches}
    # what the top box is on: its class's object, another class's (IoU >= the CorLoc IoU with
    # the object it overlaps most), part of an object (IoU > 0.1), or no object (IoU <= 0.1)
    on: dict[str, dict[str, list[str]]] = {b: defaultdict(list) for b in branches}
    frame = read_manifest(results / "manifest.parquet").split(split)
    with torch.no_grad():
        for row in frame.itertuples(index=False):
            _, image, rois, _, width, height = load_image(row, proposals, len(classes))
            x, r, _ = transform(image, rois, wcfg.test_scales[0], wcfg.max_side, False)
            out = model(x[None], r)
            # MIST's MIL branch has a background column first; OICR's has none
            scores = {"wsddn": out.wsddn_scores()[:, -len(classes) :]}
            for i, logits in enumerate(out.refine):
                scores[f"ref{i + 1}"] = F.softmax(logits.float(), dim=1)[:, 1:]
            others = every_object[int(row.coco_id)]
            all_boxes = torch.tensor([o[0] for o in others], dtype=torch.float32).view(-1, 4)
            for c in sorted({int(c) for c in row.labels}):
                own = torch.tensor([k == c for _, k in others], dtype=torch.bool)
                if not own.any():
                    continue  # a label without a box (e.g. only difficult objects)
                for b in branches:
                    top = rois[int(scores[b][:, c].argmax())]
                    overlap = box_iou(top[None], all_boxes)[0]
                    hits[b][classes[c]].append(bool(overlap[own].max() >= cfg.evaluation.iou))
                    area = float((top[2] - top[0]) * (top[3] - top[1]))
                    areas[b][classes[c]].append(area / (width * height))
                    j = int(overlap.argmax())
                    if float(overlap[j]) >= cfg.evaluation.iou:
                        kind = "own_class" if others[j][1] == c else "other_class"
                    else:
                        kind = "part" if float(overlap[j]) > 0.1 else "no_object"
                    on[b][classes[c]].append(kind)
    table: dict[str, Any] = {}
    for b in branches:
        per_class = {c: sum(v) / len(v) for c, v in hits[b].items()}
        table[b] = {
            "corloc": sum(per_class.values()) / len(per_class),
            "per_class": per_class,
            "top_box_image_fraction": {c: sum(v) / len(v) for c, v in areas[b].items()},
            "top_box_on": {c: {k: v.count(k) / len(v) for k in KINDS} for c, v in on[b].items()},
        }
    return table


def trajectory(
    cfg: WeaksamConfig, results: Path, split: str, head: str, steps: list[int], threads: int
) -> dict[int, dict]:
    """Train ``head`` as the wsod_train rule does and judge it at each of ``steps``."""
    from dataclasses import replace

    from weaksam.wsod.stage import train_stage

    # checkpoints every 25 steps: each stop below lands on one, and the run resumes from it
    if any(s <= 0 or s % 25 or s > cfg.wsod.iterations for s in steps):
        raise SystemExit(
            f"--trajectory steps must be multiples of 25 in 25-{cfg.wsod.iterations} "
            "(wsod.iterations)"
        )
    if split != cfg.dataset.train_split:
        raise SystemExit(f"--trajectory trains on the training split ({cfg.dataset.train_split})")
    cfg = replace(cfg, wsod=replace(cfg.wsod, checkpoint_every=25))
    _, digest = proposal_source(cfg, results, split)
    tables: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work, out = Path(tmp) / "work.pt", Path(tmp) / "model.pt"
        done = 0
        for step in sorted(steps):
            train_stage(
                cfg, str(results / "manifest.parquet"), str(results / "proposals" / f"{split}.h5"),
                head, str(out), digest=digest, work=str(work), train_log=str(Path(tmp) / "log.tsv"),
                threads=threads, stop_after=step - done,
            )  # fmt: skip
            done = step
            snapshot = Path(tmp) / f"step{step}.pt"
            shutil.copy(work if work.exists() else out, snapshot)
            tables[step] = branch_corloc(cfg, results, split, snapshot)
            show(f"step {step}", tables[step])
        if out.exists():
            # the whole run: its weights against the workflow's trained head, if there is one
            tables[done]["equals_workflow_model"] = same_weights(
                out, results / "wsod" / head / "model.pt"
            )
            print("equals the workflow's model:", tables[done]["equals_workflow_model"])
    return tables


def same_weights(a: Path, b: Path) -> bool | None:
    """Whether two checkpoints hold the same weights, bit for bit (None: ``b`` is missing)."""
    import torch

    from weaksam.wsod.train import load_checkpoint

    if not b.exists():
        return None
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def show(title: str, table: dict) -> None:
    print(title, flush=True)
    for b, t in table.items():
        per_class = {c: round(v, 2) for c, v in t["per_class"].items()}
        area = {c: round(v, 3) for c, v in t["top_box_image_fraction"].items()}
        print(f"  {b} {t['corloc']:.3f} {per_class}; top box / image {area}", flush=True)
        none = {c: round(v["no_object"], 2) for c, v in t["top_box_on"].items()}
        print(f"     top box on no object {none}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="+", type=Path, help="config file(s), later ones override")
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--head", default=None, help="WSOD head (default: the config's first)")
    ap.add_argument("--split", default=None, help="default: the config's training split")
    ap.add_argument(
        "--model", type=Path, default=None, help="a checkpoint (default: the results' model.pt)"
    )
    ap.add_argument(
        "--trajectory",
        type=lambda text: tuple(int(t) for t in text.split(",")),
        default=(),
        help="comma-separated steps: train again and judge the head at each",
    )
    ap.add_argument(
        "--set", default="{}", help="JSON of config sections and keys merged over the config files"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    raw = read_config_files([REPO / "config" / "config.yaml", *args.config])
    cfg = load_config(merge_config(raw, json.loads(args.set)))
    head = args.head or cfg.wsod.heads[0]
    split = args.split or cfg.dataset.train_split
    record: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "config": [str(c) for c in args.config],
        "set": json.loads(args.set),
        "results": str(args.results),
        "head": head,
        "split": split,
        "seed": cfg.compute.seed,
    }
    if args.trajectory:
        tables = trajectory(cfg, args.results, split, head, list(args.trajectory), args.threads)
        record["steps"] = {str(s): t for s, t in tables.items()}
    else:
        model = args.model or args.results / "wsod" / head / "model.pt"
        record["model"] = str(model)
        record["branches"] = branch_corloc(cfg, args.results, split, model)
        show(str(model), record["branches"])
    if args.out:
        record["machine"] = machine_info()
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
