"""``shapes``: a generated dataset in VOC devkit layout with instance masks.

Fully determined by ``ShapesConfig``: image ``i`` is drawn from ``default_rng([seed, i])``.
It is made to be hard for a weakly supervised detector:

- textured, cluttered backgrounds (gradient + sinusoid texture + low-frequency noise + random
  strokes and dots);
- 1..5 objects per image, classes drawn with replacement (several instances of one class);
- log-uniform sizes from ``min_object_fraction`` to ``max_object_fraction`` of the image side,
  random rotation and aspect ratio;
- colour and texture drawn independently of the class;
- partial occlusion (later objects cover earlier ones; each keeps at least ``min_visible``);
- distractors: shapes of no class (library shapes outside the class list, blobs, rings), drawn
  under and over the objects, never annotated.

Annotation boxes are the tight boxes of the *visible* pixels; ``SegmentationObject`` holds the
visible pixels of object ``k`` as value ``k + 1``.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from weaksam.config import ShapesConfig

logger = logging.getLogger(__name__)

Polygon = list[tuple[float, float]]


def _regular(n: int, phase: float = 0.0) -> list[Polygon]:
    return [
        [
            (math.cos(phase + 2 * math.pi * i / n), math.sin(phase + 2 * math.pi * i / n))
            for i in range(n)
        ]
    ]


def _star() -> list[Polygon]:
    pts = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.42
        a = -math.pi / 2 + math.pi * i / 5
        pts.append((r * math.cos(a), r * math.sin(a)))
    return [pts]


def _cross() -> list[Polygon]:
    w = 0.36
    return [
        [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ]
    ]


def _heart() -> list[Polygon]:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    x, y = x / 17.0, (y + 2.5) / 17.0
    return [list(zip(x.tolist(), y.tolist(), strict=True))]


# Each shape: (filled polygons, hole polygons), in a unit frame of radius about 1.
SHAPES: dict[str, Callable[[], tuple[list[Polygon], list[Polygon]]]] = {
    "circle": lambda: (_regular(64), []),
    "triangle": lambda: (_regular(3, -math.pi / 2), []),
    "square": lambda: (_regular(4, math.pi / 4), []),
    "star": lambda: (_star(), []),
    "cross": lambda: (_cross(), []),
    "hexagon": lambda: (_regular(6), []),
    "crescent": lambda: (_regular(64), [[(0.45 + 0.85 * x, 0.85 * y) for x, y in _regular(64)[0]]]),
    "heart": lambda: (_heart(), []),
}


@dataclass(frozen=True)
class PlacedObject:
    class_name: str
    mask: np.ndarray  # (H, W) bool, visible pixels
    full_area: int  # pixels of the whole shape before occlusion


def _shape_mask(
    rng: np.random.Generator, size: int, kind: str, side: float, centre: tuple[float, float]
) -> np.ndarray:
    """Rasterise one shape (random rotation and aspect) into an (H, W) bool mask."""
    if kind == "blob":
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.45, 1.0, n)
        fills: list[Polygon] = [
            list(
                zip(
                    (radii * np.cos(angles)).tolist(),
                    (radii * np.sin(angles)).tolist(),
                    strict=True,
                )
            )
        ]
        holes: list[Polygon] = []
    elif kind == "ring":
        fills, holes = _regular(48), [[(0.6 * x, 0.6 * y) for x, y in _regular(48)[0]]]
    else:
        fills, holes = SHAPES[kind]()
    theta = rng.uniform(0, 2 * np.pi)
    aspect = rng.uniform(0.75, 1.25)
    sx, sy = side / 2 * aspect, side / 2 / aspect
    cos_t, sin_t = math.cos(theta), math.sin(theta)

    def place(poly: Polygon) -> Polygon:
        return [
            (
                centre[0] + sx * x * cos_t - sy * y * sin_t,
                centre[1] + sx * x * sin_t + sy * y * cos_t,
            )
            for x, y in poly
        ]

    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in fills:
        draw.polygon(place(poly), fill=1)
    for poly in holes:
        draw.polygon(place(poly), fill=0)
    return np.asarray(canvas, dtype=bool)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.25, 1.0), rng.uniform(0.3, 1.0)
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return np.array(rgb) * 255.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], (size, size): a random grid upsampled bicubically."""
    grid = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    up = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float64) / 127.5 - 1.0


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """An (H, W, 3) float colour field: one of solid, stripes, gradient or mottled."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    kind = rng.integers(0, 4)
    if kind == 0:
        w = np.zeros((size, size))
    elif kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 14)
        w = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0).astype(
            float
        ) * 0.6
    elif kind == 2:
        angle = rng.uniform(0, 2 * np.pi)
        proj = xx * np.cos(angle) + yy * np.sin(angle)
        w = (proj - proj.min()) / max(np.ptp(proj), 1e-9)
    else:
        w = (_smooth_noise(rng, size, int(rng.integers(6, 16))) + 1) / 2
    return c1[None, None, :] * (1 - w[..., None]) + c2[None, None, :] * w[..., None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured, cluttered background, (H, W, 3) float in [0, 255]."""
    img = _texture(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(3):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 24) / size
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
        img += wave[..., None] * rng.uniform(5, 25, 3)[None, None, :]
    img += _smooth_noise(rng, size, 8)[..., None] * rng.uniform(10, 35, 3)[None, None, :]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(15, 40))):
        colour = tuple(int(v) for v in _random_colour(rng))
        x0, y0 = rng.uniform(0, size, 2)
        if rng.uniform() < 0.6:
            length, angle = rng.uniform(5, size / 3), rng.uniform(0, 2 * np.pi)
            end = (x0 + length * np.cos(angle), y0 + length * np.sin(angle))
            draw.line([(x0, y0), end], fill=colour, width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(1, 4)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    return np.asarray(canvas, dtype=np.float64)


def _paint(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    img[mask] = _texture(rng, img.shape[0])[mask]


def render_image(
    cfg: ShapesConfig, index: int
) -> tuple[np.ndarray, list[PlacedObject], np.ndarray]:
    """Draw image ``index``: returns (H, W, 3) uint8 image, objects, and the (H, W) uint8 instance
    map (object k = k + 1, background and distractors 0)."""
    size = cfg.image_size
    distractor_kinds = [k for k in SHAPES if k not in cfg.classes] + ["blob", "ring"]
    for attempt in range(50):
        rng = np.random.default_rng([cfg.seed, index, attempt])
        img = _background(rng, size)
        n_obj = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        n_dis = int(rng.integers(0, cfg.max_distractors + 1))
        # Layer order: objects and distractors shuffled together, so distractors occlude too.
        layers = [("object", str(rng.choice(cfg.classes))) for _ in range(n_obj)]
        layers += [("distractor", str(rng.choice(distractor_kinds))) for _ in range(n_dis)]
        order = rng.permutation(len(layers))
        index_map = np.zeros((size, size), np.int32)
        full_masks: list[tuple[str, np.ndarray, int]] = []
        for pos in order:
            role, kind = layers[pos]
            lo, hi = math.log(cfg.min_object_fraction), math.log(cfg.max_object_fraction)
            side = size * math.exp(rng.uniform(lo, hi))
            if role == "distractor":
                side *= rng.uniform(0.5, 1.0)
            margin = side / 2
            centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
            mask = _shape_mask(rng, size, kind, side, centre)
            if not mask.any():
                continue
            _paint(img, mask, rng)
            if role == "object":
                full_masks.append((kind, mask, len(full_masks) + 1))
                index_map[mask] = len(full_masks)
            else:
                index_map[mask] = 0
        ok = bool(full_masks) and all(
            (index_map == k).sum() >= cfg.min_visible * m.sum() for _, m, k in full_masks
        )
        if ok:
            objects = [
                PlacedObject(kind, index_map == k, int(m.sum())) for kind, m, k in full_masks
            ]
            pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(0.6)
            )
            return np.asarray(pil), objects, index_map.astype(np.uint8)
    raise RuntimeError(
        f"shapes image {index}: no layout met min_visible={cfg.min_visible} in 50 tries"
    )


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 entries, flat RGB)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _voc_xml(image_id: str, size: int, objects: list[PlacedObject]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size_node = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(size_node, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in objects:
        ys, xs = np.nonzero(obj.mask)
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.class_name
        ET.SubElement(node, "difficult").text = "0"
        box = ET.SubElement(node, "bndbox")
        # VOC: 1-based inclusive pixel indices.
        for tag, value in (
            ("xmin", xs.min() + 1),
            ("ymin", ys.min() + 1),
            ("xmax", xs.max() + 1),
            ("ymax", ys.max() + 1),
        ):
            ET.SubElement(box, tag).text = str(int(value))
    ET.indent(root)
    return ET.ElementTree(root)


def generate_shapes(cfg: ShapesConfig, out_dir: Path, splits: tuple[str, str]) -> dict[str, int]:
    """Write the dataset to ``out_dir`` in VOC devkit layout. Returns images per split."""
    for sub in (
        "JPEGImages",
        "Annotations",
        "SegmentationObject",
        "SegmentationClass",
        "ImageSets/Main",
        "ImageSets/Segmentation",
    ):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    counts = {splits[0]: cfg.num_trainval, splits[1]: cfg.num_test}
    palette = voc_palette()
    index = 0
    for split, count in counts.items():
        ids = []
        for _ in range(count):
            image_id = f"{index:06d}"
            img, objects, index_map = render_image(cfg, index)
            Image.fromarray(img).save(
                out_dir / "JPEGImages" / f"{image_id}.jpg", quality=cfg.jpeg_quality
            )
            _voc_xml(image_id, cfg.image_size, objects).write(
                out_dir / "Annotations" / f"{image_id}.xml"
            )
            inst = Image.fromarray(index_map)  # mode L; putpalette makes it P without remapping
            inst.putpalette(palette)
            inst.save(out_dir / "SegmentationObject" / f"{image_id}.png")
            cls_map = np.zeros_like(index_map)
            for k, obj in enumerate(objects):
                cls_map[index_map == k + 1] = cfg.classes.index(obj.class_name) + 1
            cls_img = Image.fromarray(cls_map)
            cls_img.putpalette(palette)
            cls_img.save(out_dir / "SegmentationClass" / f"{image_id}.png")
            ids.append(image_id)
            index += 1
        listing = "".join(f"{i}\n" for i in ids)
        (out_dir / "ImageSets" / "Main" / f"{split}.txt").write_text(listing)
        (out_dir / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(listing)
    logger.info("shapes: wrote %s to %s", counts, out_dir)
    return counts
