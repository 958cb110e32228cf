"""The records every dataset reader produces, and the bad-input policy they share.

Readers turn their source format into ``SourceImage`` entries (class *names*, boxes in the
source's own pixel frame). ``weaksam.data.build`` then checks them all the same way and writes
the manifest and the COCO ground truth.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

# One COCO-style segmentation: polygons (list of flat xy lists) or an RLE dict.
Segmentation = list[list[float]] | dict[str, Any]


class DatasetError(ValueError):
    """Bad input in a dataset; the message names the file or image and what is wrong."""


@dataclass
class SourceObject:
    """One annotated object as the source file states it.

    ``box`` is XYXY in pixels of the image *as annotated* (see ``SourceImage.annotated_size``),
    x2/y2 exclusive.
    """

    class_name: str
    box: tuple[float, float, float, float]
    ignore: bool = False  # VOC "difficult": neither a true nor a false positive in VOC AP
    iscrowd: bool = False
    segmentation: Segmentation | None = None
    area: float | None = None


@dataclass
class SourceImage:
    """One image as a reader found it. ``objects`` is None when the source has no boxes."""

    image_id: str
    path: Path
    split: str
    objects: list[SourceObject] | None
    labels: list[str] = field(default_factory=list)  # image-level labels (labels CSV only)
    annotated_size: tuple[int, int] | None = None  # (width, height) the annotation states
    mask_path: Path | None = None  # VOC SegmentationObject PNG, objects in XML order
    origin: str = ""  # the annotation file or row it came from, for messages


Action = Literal[
    "skipped_image", "dropped_object", "dropped_class", "clipped_box", "rotated_annotation"
]


@dataclass(frozen=True)
class Issue:
    image_id: str
    split: str
    path: str
    action: Action
    reason: str


class BadInputLog:
    """Applies ``on_bad_image``: raise at the first problem, or record it and go on.

    Fixes that lose nothing (a box clipped to the image, EXIF-rotated annotations) are always
    recorded, never fatal.
    """

    COLUMNS = ("image_id", "split", "path", "action", "reason")

    def __init__(self, policy: Literal["fail", "skip"]) -> None:
        self.policy = policy
        self.issues: list[Issue] = []

    def problem(self, image: SourceImage, action: Action, reason: str) -> None:
        """A problem that makes the image (or one object) unusable."""
        if self.policy == "fail":
            where = image.origin or str(image.path)
            raise DatasetError(
                f"{where}: image {image.image_id!r}: {reason} "
                "(set dataset.on_bad_image: skip to skip and record such input instead)"
            )
        self.record(image, action, reason)

    def record(self, image: SourceImage, action: Action, reason: str) -> None:
        logger.warning("%s %s: %s", action, image.image_id, reason)
        self.issues.append(Issue(image.image_id, image.split, str(image.path), action, reason))

    def write_tsv(self, path: Path) -> None:
        with path.open("w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(self.COLUMNS)
            for issue in self.issues:
                writer.writerow(
                    [issue.image_id, issue.split, issue.path, issue.action, issue.reason]
                )


def resolve_inside(root: Path, relative: str | Path, *, what: str) -> Path:
    """Resolve ``relative`` under ``root`` and refuse paths that escape it (``..``, absolute)."""
    root_resolved = root.resolve()
    candidate = (root_resolved / relative).resolve()
    if not candidate.is_relative_to(root_resolved):
        raise DatasetError(f"{what}: path {str(relative)!r} escapes the dataset root {root}")
    return candidate
