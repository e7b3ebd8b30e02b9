"""CHI on the Python side: choosing bin edges, building a segment's index, asking for bounds.

A CP range is handled as two *cuts* (see ``masksearch.ranges``): the pixels counted are those
failing the lo cut and passing the hi cut. ``Cut`` values come from the binder already made exact
for float64 comparison; ``cut_for_dtype`` makes them exact for integer pixels as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

import masksearch.kernels as kernels
from masksearch.kernels import dispatch

from ..parallel import for_chunks, run_sized
from ..ranges import Cut

if TYPE_CHECKING:
    from ..kernels.bound_kernels import ChiArrays

DEFAULT_CELL_SIZE = 16
FLOAT_UNIT_BINS = 20      # edges at multiples of 0.05 for data in [0, 1]
FEW_INTEGER_VALUES = 64   # up to this many values: one bin per value
INTEGER_BINS = 16
# Masks per unit of parallel work (see masksearch.parallel): a few hundred microseconds each.
# Cheap bounds: 25 ns a mask for one box on masks of one size, 100-200 ns for a box per
# mask (their counts are read from all over the index): 10,000 masks split on two cores.
BOUND_CHUNK = 2048
REFINE_CHUNK = 256        # cell-by-cell bounds: microseconds a mask
# Rows of a coarse pass over the corner planes, and over gathered box rectangles, that cost
# what one row of the mask-major pass does (about 40 and 13 ns a row against 140-330 ns):
# their chunks are that much larger, so that a pass over 10,000 rows stays on the calling
# thread, where handing half of it to another (asleep) thread cost more than it saved.
PLANE_ROWS_PER_ROW = 4
GATHERED_ROWS_PER_ROW = 8
CELL_BOUND_CHUNK = 128
BUILD_CHUNK = 16
RANGE_CHUNK = 64          # masks per unit of the value-range pass: a pass over pixels
PLANE_CHUNK = 256         # counts per mask transposed per unit (``corner_planes``)


def kernel_view(pixels: np.ndarray) -> np.ndarray:
    """The pixels in a dtype the kernels compile for (bool -> uint8, float16 -> float32)."""
    if pixels.dtype == np.bool_:
        return pixels.view(np.uint8)
    if pixels.dtype == np.float16:
        return pixels.astype(np.float32)
    return pixels


def default_edges(dtype: np.dtype, vmin: float, vmax: float) -> np.ndarray:
    """Bin edges for a segment whose non-NaN values span [vmin, vmax].

    Unsigned integers spanning fewer than ``FEW_INTEGER_VALUES`` values get one bin per
    value; wider spans get ``INTEGER_BINS`` equal bins plus edges at vmin + 1 and vmax, so
    that ``= vmin``, ``> vmin``, ``= vmax`` and ``< vmax`` (on 0..255 masks ``= 0``,
    ``> 0``, ``(0, 255]``, ``[1, 255]``, ``[255, 255]``) are exact from the index: binary
    masks stored as 0/255 are then decided without reading a pixel."""
    if dtype == np.bool_:
        return np.array([1.0])
    if dtype.kind == "u":
        lo, hi = int(vmin), int(vmax)
        if hi - lo < FEW_INTEGER_VALUES:
            return np.arange(lo + 1, max(hi, lo + 1) + 1, dtype=np.float64)
        bins = np.round(np.linspace(lo, hi + 1, INTEGER_BINS + 1))[1:-1]
        return np.unique(np.concatenate([[lo + 1], bins, [hi]]))
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        finite = [v for v in (vmin, vmax) if math.isfinite(v)]
        vmin = vmax = finite[0] if finite else 0.0
    if vmin >= 0.0 and vmax <= 1.0:
        return np.arange(FLOAT_UNIT_BINS + 1, dtype=np.float64) / FLOAT_UNIT_BINS
    if vmax == vmin:
        return np.array([vmin], dtype=np.float64)
    return np.linspace(vmin, vmax, FLOAT_UNIT_BINS + 1)


def count_dtype(max_pixels: int) -> np.dtype:
    """Smallest unsigned type that holds counts up to ``max_pixels``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_pixels <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def grid_shape(height: int, width: int, cell: int) -> tuple[int, int]:
    return (height + cell - 1) // cell, (width + cell - 1) // cell


def chi_offsets(heights: np.ndarray, widths: np.ndarray, cell: int, n_edges: int) -> np.ndarray:
    """Start of each mask's counts in the segment's flat count array (length N + 1)."""
    gh = (heights.astype(np.int64) + cell - 1) // cell
    gw = (widths.astype(np.int64) + cell - 1) // cell
    sizes = gh * gw * (n_edges + 1)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass(frozen=True)
class SegmentIndex:
    """The CHI of every mask of one segment, plus the per-mask geometry the kernels need."""

    cell: int
    edges: np.ndarray       # (E,) float64
    counts: np.ndarray      # flat, smallest unsigned type
    offsets: np.ndarray     # (N + 1,) int64
    eq: np.ndarray          # (N, E) pixels equal to each edge
    stats: np.ndarray       # (N, 2) float64 non-NaN min, max
    heights: np.ndarray     # (N,) int64
    widths: np.ndarray      # (N,) int64
    built: np.ndarray       # (N,) bool: False for masks not indexed yet (lazy indexing)


def kernel_arrays(index: SegmentIndex) -> ChiArrays:
    """The index's arrays in the order the bound kernels take them."""
    return (index.counts, index.offsets, index.heights, index.widths, index.edges, index.eq,
            index.stats)


def mask_range(pixels: np.ndarray, out: NDArray[np.float64]) -> None:
    """``out[:] = (np.nanmin, np.nanmax)`` of a mask's pixels (NaN, NaN for NaNs only)."""
    view = kernel_view(pixels)
    if view.ndim != 2 or view.size == 0:        # as NumPy says, errors included
        out[:] = np.nanmin(view), np.nanmax(view)
    else:
        kernels.chi_kernels.value_range(view, out)


def value_ranges(masks: list[np.ndarray]) -> NDArray[np.float64]:
    """``mask_range`` of each mask, on all cores."""
    out = np.empty((len(masks), 2))

    def part(start: int, stop: int) -> None:
        for i in range(start, stop):
            mask_range(masks[i], out[i])

    for_chunks(len(masks), RANGE_CHUNK, part)
    return out


def edges_for_ranges(dtype: np.dtype, ranges: NDArray[np.float64]) -> np.ndarray:
    """``default_edges`` of masks of ``dtype`` with these ``value_ranges`` (taken in mask
    order: a NaN range first makes the minimum or maximum NaN, as Python's ``min`` does)."""
    lo = min(float(v) for v in ranges[:, 0])
    hi = max(float(v) for v in ranges[:, 1])
    return default_edges(dtype, lo, hi)


def empty_segment_index(heights: np.ndarray, widths: np.ndarray, edges: np.ndarray,
                        cell: int) -> SegmentIndex:
    """A zeroed index for masks of these shapes, to be filled by ``fill_segment_index``."""
    n = len(heights)
    n_edges = len(edges)
    offsets = chi_offsets(heights, widths, cell, n_edges)
    max_pixels = int((heights * widths).max()) if n else 0
    counts = np.zeros(int(offsets[-1]), dtype=count_dtype(max_pixels))
    eq = np.zeros((n, n_edges), dtype=count_dtype(max_pixels))
    stats = np.zeros((n, 2), dtype=np.float64)
    return SegmentIndex(cell, edges, counts, offsets, eq, stats, heights, widths,
                        np.ones(n, bool))


def fill_segment_index(index: SegmentIndex, start: int, masks: list[np.ndarray]) -> None:
    """Build the CHIs of ``masks``, the masks ``start``, ``start + 1``, ... of ``index``.
    Threads may fill disjoint ranges of one index at once."""
    n_edges = len(index.edges)
    for j, m in enumerate(masks):
        i = start + j
        gh, gw = grid_shape(m.shape[0], m.shape[1], index.cell)
        block = index.counts[index.offsets[i]:index.offsets[i + 1]].reshape(gh, gw,
                                                                             n_edges + 1)
        kernels.chi_kernels.build_chi_one(kernel_view(m), index.edges, index.cell, block,
                                          index.eq[i], index.stats[i])


def build_segment_index(masks: list[np.ndarray], edges: np.ndarray, cell: int) -> SegmentIndex:
    """Build the CHI of a list of 2-D masks of one dtype, on all cores."""
    heights = np.array([m.shape[0] for m in masks], dtype=np.int64)
    widths = np.array([m.shape[1] for m in masks], dtype=np.int64)
    index = empty_segment_index(heights, widths, edges, cell)
    for_chunks(len(masks), BUILD_CHUNK,
               lambda s, e: fill_segment_index(index, s, masks[s:e]))
    return index


def one_shape(heights: np.ndarray, widths: np.ndarray) -> bool:
    """Whether masks of these shapes all have one shape (and there is one at least)."""
    return bool(len(heights)) and bool((heights == heights[0]).all()
                                       and (widths == widths[0]).all())


def corner_planes(index: SegmentIndex) -> np.ndarray:
    """The index's counts transposed count by count (``kernels.plane_kernels``), on all
    cores, for a segment whose masks all have one shape (``one_shape``)."""
    n = len(index.heights)
    per_mask = index.counts.size // n
    planes = np.empty_like(index.counts)
    for_chunks(per_mask, PLANE_CHUNK,
               lambda s, e: dispatch.transpose_counts(index.counts, n, s, e, planes))
    return planes


@dataclass(frozen=True)
class BoxRects:
    """The counts of each row's box's outer and inner grid rectangles at every cut, and
    the boxes' sizes, gathered for some rows of a segment (``box_rects``)."""

    rects: np.ndarray       # (2 * cuts * rows,) as ``plane_kernels.gather_box_rects``
    sizes: np.ndarray       # (rows, 3) int64: area, outer slack, inner slack


def box_rects(index: SegmentIndex, rows: np.ndarray, boxes: np.ndarray) -> BoxRects:
    """``BoxRects`` of ``rows`` with their (clipped) ``boxes``, on all cores: the coarse
    bounds of these rows and boxes then read them in order (``bound_tasks``)."""
    rows = rows.astype(np.int64, copy=False)
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)
    out = BoxRects(np.empty(2 * (len(index.edges) + 1) * len(rows), index.counts.dtype),
                   np.empty((len(rows), 3), np.int64))
    for_chunks(len(rows), BOUND_CHUNK,
               lambda s, e: dispatch.gather_box_rects(kernel_arrays(index), index.cell, rows,
                                                      boxes, s, e, out.rects, out.sizes))
    return out


def cut_for_dtype(cut: Cut, dtype: np.dtype) -> Cut:
    """An equivalent cut for pixels of ``dtype``; integer pixels get strict integer cuts."""
    if dtype.kind in "ub" and math.isfinite(cut.t):
        t = math.floor(cut.t) + 1 if cut.incl else math.ceil(cut.t)
        return Cut(float(t), False)
    return cut


def snap_to_edges(cut: Cut, edges: np.ndarray) -> Cut:
    """``v <= t`` as ``v < e`` when e is the next float after t and an edge: the same cut for
    every float, and one the index holds exactly. (A decimal end such as 0.6 becomes
    ``v <= largest float below 0.6``, which would otherwise miss the edge at 0.6.)"""
    if cut.incl and math.isfinite(cut.t):
        up = math.nextafter(cut.t, math.inf)
        k = int(np.searchsorted(edges, up))
        if k < len(edges) and edges[k] == up:
            return Cut(up, False)
    return cut


@lru_cache(maxsize=256)
def segment_cuts(ranges: tuple[tuple[Cut, Cut], ...], dtype: str,
                 edges: bytes) -> tuple[tuple[Cut, Cut], ...]:
    """The ranges' cuts made exact for pixels of ``dtype`` and snapped to the ``edges``
    (float64 bytes): worked out once for all the segments that share them."""
    values = np.frombuffer(edges, np.float64)
    return tuple((snap_to_edges(cut_for_dtype(lo, np.dtype(dtype)), values),
                  snap_to_edges(cut_for_dtype(hi, np.dtype(dtype)), values))
                 for lo, hi in ranges)


def bound_tasks(index: SegmentIndex, dtype: np.dtype, rows: np.ndarray, boxes: np.ndarray,
                ranges: list[tuple[Cut, Cut]], refine: bool,
                outs: list[tuple[np.ndarray, np.ndarray]], at: np.ndarray | slice,
                decide: tuple[np.ndarray, np.ndarray] | None = None,
                planes: np.ndarray | None = None, gathered: BoxRects | None = None,
                ) -> list[tuple[Callable[[], None], int]]:
    """Kernel calls, a chunk of rows each with its size, that write the CP bounds of
    ``rows`` of one segment (clipped ``boxes`` (M, 4)) for each range ``ranges[r]`` (as lo
    and hi cuts) to ``outs[r] = (lower, upper)`` at ``at``; for
    ``masksearch.parallel.run_sized``, with other segments' tasks.

    ``refine=False`` gives the cheap bounds from the grid rectangles in and around each box;
    with ``decide = (low, high)`` (per row), ``refine`` narrows only the bounds that do not
    tell whether ``low <= CP <= high``. ``planes``: the segment's ``corner_planes``, given
    when every row has one box on masks of one shape (the coarse bounds read them);
    ``gathered``: the ``box_rects`` of exactly these rows and boxes (coarse bounds only).
    """
    assert gathered is None or (not refine and decide is None)
    cuts = segment_cuts(tuple(ranges), dtype.str,
                        np.ascontiguousarray(index.edges, np.float64).tobytes())
    rows = rows.astype(np.int64, copy=False)
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)
    # Views where ``at`` is a slice: the kernel writes in place.
    parts = [(out_lower[at], out_upper[at]) for out_lower, out_upper in outs]
    scattered = None if isinstance(at, slice) else at
    if decide is None:
        low = high = np.full(len(rows), np.nan)
    else:
        low, high = (np.ascontiguousarray(d, np.float64) for d in decide)

    def bound(s: int, e: int) -> None:
        for (lo, hi), (lower, upper), (out_lower, out_upper) in zip(cuts, parts, outs,
                                                                     strict=True):
            cut = (lo.t, lo.incl, hi.t, hi.incl)
            if gathered is not None:    # indexed like ``rows``: written at [s, e)
                dispatch.box_rect_bounds(kernel_arrays(index), gathered.rects, gathered.sizes,
                                         rows, s, e, cut, (lower, upper))
            elif planes is not None:
                dispatch.plane_bounds(kernel_arrays(index), planes, index.cell, rows[s:e],
                                      boxes[0], cut, refine, (low[s:e], high[s:e]),
                                      (lower[s:e], upper[s:e]))
            else:
                dispatch.chi_bounds(kernel_arrays(index), index.cell, rows[s:e], boxes[s:e],
                                    cut, refine, (low[s:e], high[s:e]),
                                    (lower[s:e], upper[s:e]))
            if scattered is not None:
                out_lower[scattered[s:e]] = lower[s:e]
                out_upper[scattered[s:e]] = upper[s:e]

    # Sized by the work expected (in rows of the mask-major coarse pass): refining every
    # mask, or (deciding) mostly not; the planes' and the gathered rectangles' rows cheaper.
    per_row = 1
    if not refine and gathered is not None:
        per_row = GATHERED_ROWS_PER_ROW
    elif not refine and planes is not None:
        per_row = PLANE_ROWS_PER_ROW
    unit = (REFINE_CHUNK if refine and decide is None else BOUND_CHUNK) * per_row
    chunk = max(1, unit // len(ranges))
    return [(partial(bound, s, min(s + chunk, len(rows))),
             max(1, min(chunk, len(rows) - s) * len(ranges) // per_row))
            for s in range(0, len(rows), chunk)]


def segment_bounds(index: SegmentIndex, dtype: np.dtype, rows: np.ndarray, boxes: np.ndarray,
                   lo: Cut, hi: Cut, refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of CP for ``rows`` of one segment with clipped ``boxes``."""
    lower = np.empty(len(rows), np.int64)
    upper = np.empty(len(rows), np.int64)
    run_sized(bound_tasks(index, dtype, rows, boxes, [(lo, hi)], refine, [(lower, upper)],
                          slice(None)), REFINE_CHUNK if refine else BOUND_CHUNK)
    return lower, upper


def segment_cell_bounds(index: SegmentIndex, dtype: np.dtype, rows: np.ndarray,
                        boxes: np.ndarray, lo: Cut, hi: Cut,
                        ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Per-cell (lower, upper, covered), each (M, gh * gw), for ``rows`` sharing one shape."""
    lo = snap_to_edges(cut_for_dtype(lo, dtype), index.edges)
    hi = snap_to_edges(cut_for_dtype(hi, dtype), index.edges)
    gh, gw = grid_shape(int(index.heights[rows[0]]), int(index.widths[rows[0]]), index.cell)
    shape = (len(rows), gh, gw)
    lower, upper = np.empty(shape, np.int64), np.empty(shape, np.int64)
    covered = np.empty(shape, np.int64)
    rows = rows.astype(np.int64)
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)

    def bound(s: int, e: int) -> None:
        dispatch.chi_cell_bounds(
            kernel_arrays(index), index.cell, rows[s:e], boxes[s:e],
            (lo.t, lo.incl, hi.t, hi.incl), (lower[s:e], upper[s:e], covered[s:e]))

    for_chunks(len(rows), CELL_BOUND_CHUNK, bound)
    return (lower.reshape(len(rows), -1), upper.reshape(len(rows), -1),
            covered.reshape(len(rows), -1))
