"""Partial verification: exact counts of masks stored in tiles (segment format 3), decoding
only the tiles of the cells the index cannot settle (``kernels.tile_kernels.tile_counts``),
many masks per kernel call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import masksearch.kernels as kernels
from masksearch.kernels import dispatch, twins

from ..errors import StoreError
from ..index.chi import kernel_arrays, kernel_view
from ..ranges import Cut
from ..store.segments import Segment
from ..store.tiles import twin_cost_ns

if TYPE_CHECKING:
    from ..kernels.bound_kernels import ChiArrays


def cut_array(cuts: list[tuple[Cut, Cut]]) -> np.ndarray:
    """The (lo, hi) cuts per term as the kernel's (T, 4) floats: lo_t, lo_incl, hi_t,
    hi_incl."""
    out = np.empty((len(cuts), 4), np.float64)
    for t, (lo, hi) in enumerate(cuts):
        out[t] = lo.t, float(lo.incl), hi.t, float(hi.incl)
    return out


def _no_index(segment: Segment) -> ChiArrays:
    """Index arrays that settle nothing (the kernel is told not to use them), with the
    masks' shapes: for verification without the index."""
    heights, widths = segment.shapes
    n = len(heights)
    return (np.zeros(1, np.uint8), np.zeros(n + 1, np.int64), heights, widths,
            np.zeros(1, np.float64), np.zeros((n, 1), np.uint8), np.zeros((n, 2)))


def count_tiled(segment: Segment, rows: np.ndarray, boxes: np.ndarray, cuts: np.ndarray,
                use_index: np.ndarray | None) -> np.ndarray:
    """Exact counts (M, T) of masks ``rows`` of a tiled segment: ``boxes`` (M, T, 4)
    clipped per term, ``cuts`` from ``cut_array`` (made exact for the segment's dtype),
    ``use_index[j]``: mask j's CHI is built and may settle cells (None: no index used)."""
    tiles = segment.tiles
    assert tiles is not None
    m, n_terms = len(rows), cuts.shape[0]
    out = np.zeros((m, n_terms), np.int64)
    if m == 0:
        return out
    rows = np.ascontiguousarray(rows, np.int64)
    heights, widths = segment.shapes
    cell = int(segment.info["cell_size"])
    dtype = segment.dtype
    cost = sum(twin_cost_ns(int(heights[r]), int(widths[r]), cell, dtype.itemsize)
               for r in rows.tolist()) if not dispatch.numba_loaded() else 1 << 62
    if dispatch.use_twin(cost):
        # Small work without Numba loaded: whole masks decoded in Python, counted by NumPy.
        for j, row in enumerate(rows.tolist()):
            pixels = kernel_view(segment.pixels(row))
            for t in range(n_terms):
                x0, y0, x1, y1 = (int(v) for v in boxes[j, t])
                out[j, t] = twins.count_in_range(pixels, x0, y0, x1, y1, cuts[t, 0],
                                                 bool(cuts[t, 1]), cuts[t, 2], bool(cuts[t, 3]))
        return out
    chi: ChiArrays
    if use_index is None:
        chi = _no_index(segment)
        use = np.zeros(m, bool)
    else:
        chi = kernel_arrays(segment.index)
        use = np.ascontiguousarray(use_index, bool)
    data, starts, stops = segment.blob_spans(rows)
    scratch = np.empty(2 * cell * cell * dtype.itemsize, np.uint8)
    decoded = np.zeros(m, np.int64)
    bad = kernels.tile_kernels.tile_counts(
        data, np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(stops, np.int64),
        chi, (kernels.tile_kernels.KINDS[dtype.name], dtype.itemsize, cell, tiles.shuffle),
        rows, use, np.ascontiguousarray(boxes, np.int64), cuts, out, decoded, scratch)
    if bad >= 0:
        raise StoreError(f"{segment.files.label('pixels.arrow')}: "
                         f"{segment.mask_label(int(rows[bad]))} cannot be decoded (damaged "
                         "tiles)")
    return out
