"""Independent references for the evaluation tests and benchmarks.

``reference_voc_eval`` is the VOC devkit's per-class evaluation written out detection by
detection (as the devkit does), sharing no code with ``weaksam.evaluation``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference_voc_eval(
    gt: dict[str, Any], dets: list[dict[str, Any]], cat: int, *, plus_one: bool, use_07: bool
) -> float:
    """The VOC devkit's per-class evaluation, written out detection by detection."""
    recs: dict[int, dict[str, Any]] = {}
    for a in gt["annotations"]:
        if a["category_id"] != cat:
            continue
        r = recs.setdefault(a["image_id"], {"bbox": [], "difficult": [], "det": []})
        x, y, w, h = a["bbox"]
        r["bbox"].append([x, y, x + w, y + h])
        r["difficult"].append(bool(a.get("ignore", 0)))
        r["det"].append(False)
    npos = sum(not d for r in recs.values() for d in r["difficult"])
    cd = sorted((d for d in dets if d["category_id"] == cat), key=lambda d: -d["score"])
    tp, fp = [], []
    one = 1.0 if plus_one else 0.0
    for d in cd:
        x, y, w, h = d["bbox"]
        bb = [x, y, x + w, y + h]
        r = recs.get(d["image_id"])
        ovmax, jmax = -1.0, -1
        for j, g in enumerate(r["bbox"] if r else []):
            iw = min(bb[2], g[2]) - max(bb[0], g[0]) + one
            ih = min(bb[3], g[3]) - max(bb[1], g[1]) + one
            inter = max(iw, 0) * max(ih, 0)
            uni = (
                (bb[2] - bb[0] + one) * (bb[3] - bb[1] + one)
                + (g[2] - g[0] + one) * (g[3] - g[1] + one)
                - inter
            )
            if inter / uni > ovmax:
                ovmax, jmax = inter / uni, j
        if ovmax >= 0.5:
            assert r is not None
            if r["difficult"][jmax]:
                continue
            if not r["det"][jmax]:
                r["det"][jmax] = True
                tp.append(1.0)
                fp.append(0.0)
            else:
                tp.append(0.0)
                fp.append(1.0)
        else:
            tp.append(0.0)
            fp.append(1.0)
    if npos == 0:
        return float("nan")
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    if use_07:
        return (
            sum(
                (max(prec[rec >= t]) if (rec >= t).any() else 0.0)
                for t in [i / 10 for i in range(11)]
            )
            / 11
        )
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def random_problem(
    seed: int, *, crowded: bool, num_images: int = 30, num_classes: int = 3
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Random ground truth and detections. Not crowded: ground truth in separate grid cells,
    so no detection can reach IoU 0.5 with two of them (then VOC and COCO matching agree)."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id, "width": 400, "height": 400})
        cells = rng.permutation(16)[: rng.integers(1, 5)]
        for cell in cells:
            cx, cy = int(cell % 4) * 100 + 10, int(cell // 4) * 100 + 10
            w, h = (float(v) for v in rng.uniform(20, 80, 2))
            x, y = (
                (cx + float(rng.uniform(-30, 30)), cy + float(rng.uniform(-30, 30)))
                if crowded
                else (float(cx), float(cy))
            )
            cat = int(rng.integers(1, num_classes + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "ignore": int(crowded and rng.uniform() < 0.15),
                }
            )
            for _ in range(int(rng.integers(0, 4))):
                jit = [float(v) for v in rng.normal(0, rng.choice([2.0, 10.0]), 4)]
                dets.append(
                    {
                        "image_id": img_id,
                        "category_id": cat
                        if rng.uniform() < 0.85
                        else int(rng.integers(1, num_classes + 1)),
                        "bbox": [x + jit[0], y + jit[1], max(w + jit[2], 2), max(h + jit[3], 2)],
                        "score": float(rng.uniform()),
                    }
                )
        for _ in range(int(rng.integers(0, 4))):  # false positives anywhere
            x, y = (float(v) for v in rng.uniform(0, 350, 2))
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": int(rng.integers(1, num_classes + 1)),
                    "bbox": [x, y, 40.0, 40.0],
                    "score": float(rng.uniform()),
                }
            )
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, num_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets
