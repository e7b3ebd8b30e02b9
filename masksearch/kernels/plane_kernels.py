"""CP bounds of one box over many masks of one shape, from the CHI's *corner planes*.

A segment's counts lie mask after mask (``chi_kernels``): the coarse bounds of a box read
8 corners at a few cuts of each mask, 8.6 kB apart from one mask to the next for 224x224
maps, so a pass over thousands of masks waits on memory. The corner planes hold the same
counts transposed, count by count: ``planes[c * n + i]`` is count ``c`` of mask ``i`` (``c``
in a mask's own order, ``chi_offsets``), for a segment of ``n`` masks of one shape. A box
on masks of one shape reads the same counts of every mask: with planes, a few arrays in
order.
"""

import numpy as np
from numba import njit
from numpy.typing import NDArray

from .bound_kernels import (
    ChiArrays,
    RangeCut,
    boundary_cells,
    box_geometry,
    box_grid,
    cells_bounds,
    cut_spec,
    decides,
    query_cut,
    range_count_bounds,
    rect_count,
)

# Masks and counts of a block of the transposition.
TRANSPOSE_BLOCK = 64


@njit(cache=True, nogil=True)
def transpose_counts(counts: np.ndarray, n_masks: int, start: int, stop: int,
                     planes: np.ndarray) -> None:
    """``planes[c * n_masks + i] = counts[i * per_mask + c]`` for counts ``c`` in
    [start, stop): the planes of masks whose counts all have one size, in blocks that
    stay in the cache, each plane's part written in order (4x faster than each mask's
    part read in order, on 4,096 224x224 maps)."""
    per_mask = counts.shape[0] // n_masks
    for c0 in range(start, stop, TRANSPOSE_BLOCK):
        c1 = min(c0 + TRANSPOSE_BLOCK, stop)
        for i0 in range(0, n_masks, TRANSPOSE_BLOCK):
            i1 = min(i0 + TRANSPOSE_BLOCK, n_masks)
            for c in range(c0, c1):
                row = c * n_masks
                for i in range(i0, i1):
                    planes[row + i] = counts[i * per_mask + c]


# Refinement reads the planes too when at least this share of the rows needs it: the cells
# along a box's edge then lie side by side for neighbouring masks (fewer, they are better
# read from each mask's own counts, a few cache lines per cell).
DENSE_REFINE = 8


@njit(cache=True, nogil=True)
def plane_bounds(chi: ChiArrays, planes: np.ndarray, cell: int, rows: NDArray[np.int64],
                 box: NDArray[np.int64], cut: RangeCut, refine: bool,
                 decide: tuple[NDArray[np.float64], NDArray[np.float64]],
                 out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``bound_kernels.chi_bounds`` for one clipped ``box`` (x0, y0, x1, y1) on masks
    ``rows`` of a segment whose masks all have one shape, reading the segment's corner
    ``planes`` (``transpose_counts``); the rows to refine cell by cell from the planes when
    they are many (``DENSE_REFINE``), else from each mask's counts. The same bounds, bit for
    bit."""
    counts, offsets, heights, widths, edges, eq, stats = chi
    lo_t, lo_incl, hi_t, hi_incl = cut
    decide_low, decide_high = decide
    out_lower, out_upper = out
    n_rows = rows.shape[0]
    if n_rows == 0:
        return
    n = heights.shape[0]
    n_edges = edges.shape[0]
    h, w = heights[0], widths[0]
    x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
    outer, inner, area, outer_slack, inner_slack = box_geometry(h, w, cell, x0, y0, x1, y1,
                                                                n_edges + 1)
    lo_k, lo_on_edge = query_cut(lo_t, edges)
    hi_k, hi_on_edge = query_cut(hi_t, edges)
    # The inner rectangle's bounds of the rows left to refine, which refinement adds to.
    todo = np.empty(n_rows if refine else 0, np.int64)
    inner_lower = np.empty(todo.shape[0], np.int64)
    inner_upper = np.empty(todo.shape[0], np.int64)
    n_todo = 0
    for j in range(n_rows):
        i = rows[j]
        lo = cut_spec(lo_k, lo_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], lo_t,
                      lo_incl)
        hi = cut_spec(hi_k, hi_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], hi_t,
                      hi_incl)
        lower = upper = il = iu = 0
        if area > 0:
            ol, ou = range_count_bounds(planes, i, outer, lo, hi, n)
            il, iu = range_count_bounds(planes, i, inner, lo, hi, n)
            lower = max(il, ol - outer_slack)
            upper = min(ou, iu + inner_slack, area)
        out_lower[j] = lower
        out_upper[j] = upper
        if refine and not decides(lower, upper, decide_low[j], decide_high[j]):
            todo[n_todo] = j
            inner_lower[n_todo] = il
            inner_upper[n_todo] = iu
            n_todo += 1
    if n_todo == 0:
        return
    outer_grid, inner_grid = box_grid(h, w, cell, x0, y0, x1, y1)
    cells = boundary_cells((h, w, cell, n_edges + 1), (x0, y0, x1, y1), outer_grid, inner_grid)
    dense = n_todo * DENSE_REFINE >= n
    for t in range(n_todo):
        j = todo[t]
        i = rows[j]
        lo = cut_spec(lo_k, lo_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], lo_t,
                      lo_incl)
        hi = cut_spec(hi_k, hi_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], hi_t,
                      hi_incl)
        if dense:
            cl, cu = cells_bounds(planes, i, cells, lo, hi, n)
        else:
            cl, cu = cells_bounds(counts, offsets[i], cells, lo, hi)
        out_lower[j] = max(out_lower[j], inner_lower[t] + cl)
        out_upper[j] = min(out_upper[j], inner_upper[t] + cu)


# --- a box per mask: its rectangles' counts gathered ------------------------------------
# For boxes from a column (a box per mask), the counts of each row's outer and inner grid
# rectangles (``box_geometry``) at every cut are gathered once, into planes of their own:
# ``rects[(r * n_cuts + k) * m + j]`` for row j of m, rectangle r (0 outer, 1 inner) and cut
# k; with ``sizes[j] = (area, outer slack, inner slack)``. The coarse bounds of the same rows
# and boxes then read a few of these in order, and work out no geometry.


@njit(cache=True, nogil=True)
def gather_box_rects(chi: ChiArrays, cell: int, rows: NDArray[np.int64],
                     boxes: NDArray[np.int64], start: int, stop: int, rects: np.ndarray,
                     sizes: NDArray[np.int64]) -> None:
    """Gather rows [start, stop) of ``rows`` (clipped ``boxes``, one per row) into
    ``rects`` and ``sizes`` (see above; m = ``rows.shape[0]``)."""
    counts, offsets, heights, widths, edges = chi[0], chi[1], chi[2], chi[3], chi[4]
    m = rows.shape[0]
    n_cuts = edges.shape[0] + 1
    for j in range(start, stop):
        i = rows[j]
        outer, inner, area, outer_slack, inner_slack = box_geometry(
            heights[i], widths[i], cell, boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3],
            n_cuts)
        base = offsets[i]
        for k in range(n_cuts):
            rects[k * m + j] = rect_count(counts, base, outer, k)
            rects[(n_cuts + k) * m + j] = rect_count(counts, base, inner, k)
        sizes[j, 0] = area
        sizes[j, 1] = outer_slack
        sizes[j, 2] = inner_slack


# A gathered rectangle as a "grid rectangle" of one corner: its count at cut k is read at
# ``rects[at + k * m]`` by ``range_count_bounds`` with stride m.
_GATHERED = (0, 0, 0, 0, 1, 0, 0, 0)


@njit(cache=True, nogil=True)
def box_rect_bounds(chi: ChiArrays, rects: np.ndarray, sizes: NDArray[np.int64],
                    rows: NDArray[np.int64], start: int, stop: int, cut: RangeCut,
                    out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """The coarse bounds (``chi_bounds`` without refinement) of rows [start, stop) of
    ``rows``, from the ``rects`` and ``sizes`` gathered for all of ``rows`` and their boxes
    (``gather_box_rects``); ``out`` is indexed like ``rows``."""
    edges, eq, stats = chi[4], chi[5], chi[6]
    lo_t, lo_incl, hi_t, hi_incl = cut
    out_lower, out_upper = out
    m = rows.shape[0]
    n_edges = edges.shape[0]
    inner = (n_edges + 1) * m
    lo_k, lo_on_edge = query_cut(lo_t, edges)
    hi_k, hi_on_edge = query_cut(hi_t, edges)
    for j in range(start, stop):
        area = sizes[j, 0]
        if area <= 0:
            out_lower[j] = 0
            out_upper[j] = 0
            continue
        i = rows[j]
        lo = cut_spec(lo_k, lo_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], lo_t,
                      lo_incl)
        hi = cut_spec(hi_k, hi_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], hi_t,
                      hi_incl)
        ol, ou = range_count_bounds(rects, j, _GATHERED, lo, hi, m)
        il, iu = range_count_bounds(rects, inner + j, _GATHERED, lo, hi, m)
        out_lower[j] = max(il, ol - sizes[j, 1])
        out_upper[j] = min(ou, iu + sizes[j, 2], area)
