"""The proposal store (DESIGN.md section 3): one HDF5 group per image with ``boxes [N, 4] f32``,
``scores [N] f32``, ``source [N] u1``; file attributes record the model, the config digest, the
class list, the source codes and the format version. ``ProposalReader.load`` gives one image's
boxes in O(1), with the load-time filters applied."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksam.h5store import StoreError, StoreReader
from weaksam.proposals.filters import filter_proposals

logger = logging.getLogger(__name__)

PROPOSAL_STORE_KIND = "proposals"

# The codes of the ``source`` dataset, recorded in every store's attributes.
SOURCES = {"grid": 0, "peak": 1, "peak_class": 2, "selective_search": 3, "ground_truth": 4}


@dataclass(frozen=True)
class ImageProposals:
    """One image's proposals as a generator returns them, before they are written."""

    boxes: np.ndarray  # (N, 4) float32 XYXY, x2 / y2 exclusive, original pixels
    scores: np.ndarray  # (N,) float32 predicted IoU
    source: np.ndarray  # (N,) uint8 codes of SOURCES
    empty_masks: int


@dataclass(frozen=True)
class LoadedProposals:
    boxes: np.ndarray  # (N, 4) float32 XYXY
    scores: np.ndarray  # (N,) float32
    source: np.ndarray  # (N,) uint8


class ProposalReader(StoreReader):
    def __init__(
        self,
        path: str | Path,
        *,
        config_digest: str | None = None,
        min_side: float = 0.0,
        max_area_fraction: float | None = None,
    ) -> None:
        super().__init__(path, kind=PROPOSAL_STORE_KIND, config_digest=config_digest)
        self.min_side = min_side
        self.max_area_fraction = max_area_fraction

    def raw(self, image_id: str) -> LoadedProposals:
        g = self[image_id]
        return LoadedProposals(g["boxes"][()], g["scores"][()], g["source"][()])

    def load(self, image_id: str, width: int, height: int) -> LoadedProposals:
        """One image's proposals after the load-time filters (clip, minimum side, the optional
        area cap, dedup)."""
        p = self.raw(image_id)
        b, s, src = filter_proposals(
            p.boxes,
            p.scores,
            p.source,
            width=width,
            height=height,
            min_side=self.min_side,
            max_area_fraction=self.max_area_fraction,
        )
        return LoadedProposals(b, s, src)

    def require_nonempty(self, image_id: str, width: int, height: int) -> LoadedProposals:
        """Like ``load``, but an image left with no proposal is an error naming it."""
        p = self.load(image_id, width, height)
        if len(p.boxes) == 0:
            raise StoreError(
                f"{self.path}: image {image_id!r} has no proposals after the load filters (min side {self.min_side}, max area fraction {self.max_area_fraction})"
            )
        return p
