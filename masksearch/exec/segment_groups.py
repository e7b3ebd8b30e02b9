"""Rows grouped by the segment that holds them: the unit of every per-segment kernel call."""

from __future__ import annotations

import numpy as np


def segment_groups(seg: np.ndarray) -> list[tuple[int, slice | np.ndarray]]:
    """(segment, positions in ``seg`` of its rows) for every segment in ``seg``; the
    positions are a slice where the rows are in segment order, as the store lists them."""
    if not len(seg):
        return []
    if (seg[1:] >= seg[:-1]).all():
        cuts = (np.flatnonzero(seg[1:] != seg[:-1]) + 1).tolist()
        return [(int(seg[a]), slice(a, b))
                for a, b in zip([0, *cuts], [*cuts, len(seg)], strict=True)]
    order = np.argsort(seg, kind="stable")
    cuts = (np.flatnonzero(np.diff(seg[order])) + 1).tolist()
    return [(int(seg[order[a]]), order[a:b])
            for a, b in zip([0, *cuts], [*cuts, len(seg)], strict=True)]
