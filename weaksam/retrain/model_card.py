"""A model card next to every retrained model (``detector/…/model_card.md``,
``maskrcnn/…/model_card.md``): what it was trained on, how, how well it does, and where it is weak.

Everything comes from the run's own files: the manifest (dataset, images, classes), the pseudo
ground truth it learned from and that file's measured precision / recall (where the training
split has ground truth), the checkpoint (schedule, backbone), the test metrics (where the test
split has ground truth), the config digest and the commit of the checkout that wrote the card.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from weaksam.data.manifest import read_manifest
from weaksam.retrain.train import load_checkpoint

# a class whose test AP50 is below this share of the mean is listed as weak
WEAK_SHARE = 0.5


def _commit(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _read(path: str | None) -> dict[str, Any] | None:
    if not path or not Path(path).is_file():
        return None
    with Path(path).open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def _number(v: Any) -> float | None:
    """A finite number, or None (metrics files write an undefined AP as null or NaN)."""
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _fmt(v: Any) -> str:
    n = _number(v)
    return "n/a" if n is None else f"{n:.3f}"


def weak_classes(per_class: dict[str, dict[str, Any]], key: str = "ap11") -> list[str]:
    """Classes whose AP is below ``WEAK_SHARE`` x the mean over the classes with a value."""
    values = {c: n for c, v in per_class.items() if (n := _number(v.get(key))) is not None}
    if not values:
        return []
    mean = sum(values.values()) / len(values)
    return [c for c, v in values.items() if v < WEAK_SHARE * mean]


def model_card(
    *,
    model_path: str,
    manifest_path: str,
    instances_path: str,
    pgt_quality_path: str | None,
    metrics_path: str | None,
    digest: str,
    repo: Path,
) -> str:
    """The card as Markdown."""
    state = load_checkpoint(model_path)
    rcfg = state["retrain_config"]
    classes = list(state["classes"])
    masks = bool(state["masks"])
    manifest = read_manifest(manifest_path)
    frame = manifest.frame
    with Path(instances_path).open() as f:
        instances = json.load(f)
    boxes_per_class = Counter(int(a["category_id"]) for a in instances["annotations"])
    kind = "Mask R-CNN" if masks else "Faster R-CNN"
    lines = [
        f"# {kind} ({Path(model_path).parent.name}), dataset `{manifest.dataset}`",
        "",
        "## Training data",
        "",
        f"- dataset `{manifest.dataset}`: "
        + ", ".join(f"{n} {s} images" for s, n in Counter(frame["split"]).items()),
        f"- classes ({len(classes)}): " + ", ".join(classes),
        f"- learned from `{instances_path}`: {len(instances['images'])} images, "
        f"{len(instances['annotations'])} pseudo {'masks' if masks else 'boxes'} "
        "(image-level labels only; no ground-truth box was used)",
    ]
    quality = _read(pgt_quality_path)
    if quality and quality.get("ground_truth"):
        p = quality["pgt"]
        lines.append(
            f"- those pseudo boxes against the training split's ground truth (IoU {p['iou']}): "
            f"precision {p['precision']:.3f}, recall {p['recall']:.3f}"
        )
    lines += [
        "",
        "## Training",
        "",
        f"- backbone `{rcfg['backbone']}` (rate x{rcfg['backbone_lr_mult']} of the heads'), "
        f"{rcfg['iterations']} steps of {rcfg['batch_size']} images, lr {rcfg['lr']}, "
        f"steps {list(rcfg['lr_steps'])}, warm-up {rcfg['warmup_iterations']}",
        f"- training sizes {list(rcfg['train_sizes'])} (max {rcfg['max_size']}); test size "
        f"{rcfg['test_size']}, TTA sizes {list(rcfg['tta_sizes']) or 'none'}",
        f"- RoI drop: {'on from step ' + str(rcfg['roi_drop']['start_iter']) if rcfg['roi_drop']['enabled'] else 'off'}",
        f"- config digest `{digest}`, commit `{_commit(repo)}`",
        "",
        "## Test metrics",
        "",
    ]
    metrics = _read(metrics_path)
    if metrics is None:
        lines.append("The test split has no ground truth: no metrics.")
    else:
        voc = metrics["voc"]
        summary = (
            f"VOC AP50 (11-point) {_fmt(voc['map11'])}, area {_fmt(voc['map_area'])} on "
            f"{metrics['num_images']} test images"
        )
        if "coco_segm" in metrics:
            summary += f"; mask AP50 {_fmt(metrics['coco_segm'].get('AP50'))}"
        lines.append(summary)
        lines += ["", "| class | AP50 | test objects | pseudo boxes |", "|---|---|---|---|"]
        for k, name in enumerate(classes, start=1):
            c = voc["per_class"].get(name, {})
            lines.append(
                f"| {name} | {_fmt(c.get('ap11'))} | {c.get('npos', 0)} | "
                f"{boxes_per_class.get(k, 0)} |"
            )
    lines += ["", "## Limitations", ""]
    weak = weak_classes(metrics["voc"]["per_class"]) if metrics else []
    unseen = [c for k, c in enumerate(classes, start=1) if not boxes_per_class.get(k)]
    if weak:
        lines.append(
            f"- weak classes (test AP50 under {WEAK_SHARE:.0%} of the mean): " + ", ".join(weak)
        )
    if unseen:
        lines.append("- classes without any pseudo box (never learned): " + ", ".join(unseen))
    lines.append(
        "- trained on pseudo labels from image-level labels: its errors follow theirs (see the "
        "precision / recall above and the report's stage-vs-bound table)"
    )
    return "\n".join(lines) + "\n"
