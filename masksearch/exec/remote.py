"""Pixel work of the merge done elsewhere (a cluster's workers): exact CP of rows, and of
groups' aggregated masks. Only where the masks are (segment positions and rows), boxes and
ranges go there; counts come back."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..ranges import Cut
from .stats import WorkerStats

CutPair = tuple[Cut, Cut]


class RemotePixels(Protocol):
    """Counts pixels on another machine, over the same snapshot as the query; ``workers``
    says what each machine did (EXPLAIN ANALYZE)."""

    workers: dict[str, WorkerStats]

    def count_rows(self, seg: np.ndarray, row: np.ndarray, boxes: list[np.ndarray],
                   cuts: list[CutPair]) -> tuple[np.ndarray, int]:
        """(M, T) exact counts of mask ``row[i]`` of segment ``seg[i]`` for each term t
        (its box per mask ``boxes[t]``, its range ``cuts[t]``), and the bytes read."""
        ...

    def count_groups(self, members: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                     boxes: list[np.ndarray], cuts: list[CutPair]) -> tuple[np.ndarray, int]:
        """(G, T) exact counts over each group's aggregated mask (``kinds[t]``: intersect,
        union or mean of the members ``members[g]`` = (segments, rows)), and the bytes
        read."""
        ...


def split_evenly(n: int, parts: int) -> list[np.ndarray]:
    """``range(n)`` in at most ``parts`` contiguous, non-empty pieces."""
    return [p for p in np.array_split(np.arange(n), max(1, min(parts, n))) if len(p)]
