"""``weaksam inspect FILE``: what an artifact holds, and what in it looks wrong.

Recognised by content, not by name: the manifest (Parquet with weaksam metadata), prompts
(Parquet with prompt columns), CAM and proposal stores (HDF5 with a ``kind``), COCO instances and
COCO results (JSON), and checkpoints (``torch.save`` dicts with a ``kind``). Each summary gives
counts, per-class figures, the config digest and format version where the file has them, and a
list of problems (empty when the file is consistent).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Summary:
    kind: str
    facts: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"kind: {self.kind}"]
        lines += [f"{k}: {v}" for k, v in self.facts.items()]
        if self.per_class:
            lines.append("per class:")
            lines += [f"  {k}: {v}" for k, v in self.per_class.items()]
        lines.append("problems: none" if not self.problems else "problems:")
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _parquet(path: Path) -> Summary:
    import pyarrow.parquet as pq

    columns = set(pq.read_schema(path).names)
    if {"image_id", "coco_id", "path", "split", "labels"} <= columns:
        from weaksam.data.manifest import read_manifest

        m = read_manifest(path)
        f = m.frame
        s = Summary("manifest")
        s.facts.update(
            dataset=m.dataset,
            images=len(f),
            splits=dict(Counter(f["split"])),
            classes=len(m.classes),
        )
        counts = Counter(c for labels in f["labels"] for c in labels)
        s.per_class = {name: f"{counts.get(i, 0)} images" for i, name in enumerate(m.classes)}
        if f["image_id"].duplicated().any():
            s.problems.append("duplicate image ids")
        missing = [p for p in f["path"] if not Path(p).is_file()]
        if missing:
            s.problems.append(f"{len(missing)} image files are missing, e.g. {missing[0]}")
        if (f["labels"].map(len) == 0).any():
            s.problems.append("images without labels")
        return s
    import pandas as pd

    frame = pd.read_parquet(path)
    if {"image_id", "x", "y", "class_id", "source"} <= set(frame.columns):
        s = Summary("prompts")
        s.facts.update(
            images=frame["image_id"].nunique(),
            prompts=len(frame),
            by_source=dict(Counter(frame["source"])),
        )
        peaks = frame[frame["source"] != "grid"]
        s.per_class = {
            f"class {k}": f"{v} peaks" for k, v in sorted(Counter(peaks["class_id"]).items())
        }
        if (frame[["x", "y"]] < 0).any().any():
            s.problems.append("prompts with negative coordinates")
        return s
    return Summary("parquet", {"rows": len(frame), "columns": list(frame.columns)})


# the datasets every image group of a store kind must hold
REQUIRED_DATASETS = {"proposals": ("boxes", "scores", "source"), "cam": ("cams", "class_ids")}


def _hdf5(path: Path) -> Summary:
    import h5py

    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        kind = str(attrs.get("kind", "hdf5"))
        s = Summary(kind)
        for key in ("format_version", "config_digest", "model", "split", "method"):
            if key in attrs:
                s.facts[key] = attrs[key].item() if hasattr(attrs[key], "item") else attrs[key]
        images = f.get("images")
        if images is None:
            s.problems.append("no 'images' group (not a weaksam store)")
            return s
        s.facts["images"] = len(images)
        if "image_count" in attrs and int(attrs["image_count"]) != len(images):
            s.problems.append(
                f"{len(images)} image groups, but the store was finished with "
                f"{int(attrs['image_count'])}: groups were deleted or added since"
            )
        incomplete = [k for k in images if not images[k].attrs.get("complete", False)]
        if incomplete:
            s.problems.append(f"{len(incomplete)} incomplete image groups, e.g. {incomplete[0]}")
        needed = REQUIRED_DATASETS.get(kind, ())
        lacking = {
            k: [d for d in needed if d not in images[k]]
            for k in images
            if any(d not in images[k] for d in needed)
        }
        if lacking:
            first = next(iter(lacking))
            s.problems.append(
                f"{len(lacking)} image groups lack datasets, e.g. {first} has no {lacking[first]}"
            )
            return s  # the figures below need them
        if kind == "proposals":
            n = np.array([images[k]["boxes"].shape[0] for k in images])
            s.facts["boxes"] = int(n.sum())
            if len(n):
                s.facts["boxes per image (min / mean / max)"] = (
                    f"{n.min()} / {n.mean():.1f} / {n.max()}"
                )
            empty = int((n == 0).sum())
            if empty:
                s.problems.append(f"{empty} images without proposals")
            sources: Counter[int] = Counter()
            bad = 0
            for k in images:
                b = images[k]["boxes"][()]
                sources.update(images[k]["source"][()].tolist())
                bad += int(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).sum())
            names = json.loads(attrs["sources"]) if "sources" in attrs else {}
            code_to_name = {v: k for k, v in names.items()} if isinstance(names, dict) else {}
            s.facts["by source"] = {code_to_name.get(c, c): v for c, v in sorted(sources.items())}
            if bad:
                s.problems.append(f"{bad} boxes with zero or negative width or height")
        elif kind == "cam":
            classes = json.loads(attrs["classes"]) if "classes" in attrs else []
            counts: Counter[int] = Counter()
            for k in images:
                if "class_ids" in images[k]:
                    counts.update(images[k]["class_ids"][()].tolist())
            s.per_class = {
                (classes[c] if c < len(classes) else str(c)): f"{v} maps"
                for c, v in sorted(counts.items())
            }
        return s


def _json(path: Path) -> Summary:
    with path.open() as f:
        data = json.load(f)
    if isinstance(data, list):
        s = Summary("COCO results (detections)")
        s.facts["detections"] = len(data)
        s.facts["images"] = len({d.get("image_id") for d in data})
        s.facts["with masks"] = sum("segmentation" in d for d in data)
        s.per_class = {
            f"category {k}": v
            for k, v in sorted(Counter(d.get("category_id") for d in data).items())
        }
        scores = np.array([d.get("score", np.nan) for d in data], dtype=float)
        if np.isnan(scores).any():
            s.problems.append("detections without a score")
        if any(
            d.get("bbox", [0, 0, 1, 1])[2] <= 0 or d.get("bbox", [0, 0, 1, 1])[3] <= 0 for d in data
        ):
            s.problems.append("boxes with zero or negative width or height")
        return s
    if isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data):
        anns = data["annotations"]
        s = Summary("COCO instances")
        s.facts["description"] = data.get("info", {}).get("description", "")
        s.facts["images"] = len(data["images"])
        s.facts["annotations"] = len(anns)
        s.facts["with masks"] = sum("segmentation" in a for a in anns)
        s.facts["with scores"] = sum("score" in a for a in anns)
        names = {int(c["id"]): c["name"] for c in data["categories"]}
        counts = Counter(int(a["category_id"]) for a in anns)
        s.per_class = {names.get(k, k): v for k, v in sorted(counts.items())}
        ids = {int(i["id"]) for i in data["images"]}
        size = {int(i["id"]): (i.get("width"), i.get("height")) for i in data["images"]}
        unknown = sum(int(a["image_id"]) not in ids for a in anns)
        if unknown:
            s.problems.append(f"{unknown} annotations refer to unknown images")
        bad_cat = sum(int(a["category_id"]) not in names for a in anns)
        if bad_cat:
            s.problems.append(f"{bad_cat} annotations have unknown categories")
        bad_size = [i for i, (w, h) in size.items() if not _positive(w) or not _positive(h)]
        if bad_size:
            s.problems.append(
                f"{len(bad_size)} images with a missing, zero, negative or non-finite width or "
                f"height, e.g. image {bad_size[0]}: {size[bad_size[0]]}"
            )
        outside = degenerate = 0
        for a in anns:
            w, h = size.get(int(a["image_id"]), (None, None))
            x, y, bw, bh = (float(v) for v in a["bbox"])
            if not all(np.isfinite([x, y, bw, bh])) or bw <= 0 or bh <= 0:
                degenerate += 1
            elif (
                _positive(w)
                and _positive(h)
                and (x < 0 or y < 0 or x + bw > w + 1e-3 or y + bh > h + 1e-3)
            ):
                outside += 1
        if degenerate:
            s.problems.append(
                f"{degenerate} boxes with zero, negative or non-finite width or height"
            )
        if outside:
            s.problems.append(f"{outside} boxes reach outside their image")
        return s
    return Summary(
        "json",
        {"top-level keys": list(data)[:10] if isinstance(data, dict) else type(data).__name__},
    )


def _positive(v: Any) -> bool:
    """A usable image side: a finite number above 0."""
    return isinstance(v, int | float) and bool(np.isfinite(v)) and v > 0


def _checkpoint(path: Path) -> Summary:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign
        return Summary("checkpoint", problems=[f"cannot load with weights_only=True: {exc}"])
    if not isinstance(state, dict):
        return Summary("checkpoint", problems=["not a dict"])
    s = Summary(f"checkpoint ({state.get('kind', 'unknown kind')})")
    for key in ("format_version", "head", "step", "masks", "proposals"):
        if key in state:
            s.facts[key] = state[key]
    if "classes" in state:
        s.facts["classes"] = list(state["classes"])
    model = state.get("model", {})
    if isinstance(model, dict):
        n = sum(int(v.numel()) for v in model.values() if hasattr(v, "numel"))
        s.facts["tensors"] = len(model)
        s.facts["parameters"] = n
        nonfinite = [
            k
            for k, v in model.items()
            if hasattr(v, "isfinite") and v.is_floating_point() and not bool(v.isfinite().all())
        ]
        if nonfinite:
            s.problems.append(f"non-finite values in {nonfinite[:3]}")
    s.facts["resumable"] = any(k.startswith("optimizer") for k in state)
    return s


def inspect_file(path: str | Path) -> Summary:
    """What ``path`` holds; a file that cannot be read (missing, truncated, foreign) is a
    summary whose problem names it, never an exception, so that a listing of many files goes on."""
    p = Path(path)
    if not p.is_file():
        return Summary("missing", problems=[f"{p}: no such file"])
    with p.open("rb") as f:
        head = f.read(8)
    readers = {b"PAR1": _parquet, b"\x89HDF": _hdf5, b"PK": _checkpoint}  # PK: torch.save's zip
    reader = next((r for magic, r in readers.items() if head.startswith(magic)), None)
    if reader is None and head[:1] in (b"{", b"["):
        reader = _json
    if reader is None:
        return Summary(
            "unknown",
            problems=[f"{p}: not a weaksam artifact (Parquet, HDF5, JSON or a torch checkpoint)"],
        )
    try:
        return reader(p)
    except Exception as exc:  # truncated or malformed: say which file and why
        return Summary("unreadable", problems=[f"{p}: cannot be read: {type(exc).__name__}: {exc}"])
