"""CP bounds from the CHI (layout in ``chi_kernels``).

A query cut is ``value < t`` (``incl`` False) or ``value <= t``. For one mask and one grid
rectangle, the pixels F satisfying the cut are bracketed by the rectangle's stored counts C(k):

    F >= fl * C(kl)        F <= min(fu * C(ku), fl * C(kl) + slack)

The *cut spec* (kl, ku, fl, fu, slack) depends on the query and on the mask's min, max and
edge counts only. Every case (no pixel, every pixel, a cut on an edge, a cut between edges)
takes this one form, so the per-mask loop reads the same counts in the same way whatever the
data: branching on the case per mask cost most of the time, in mispredictions.
"""

from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

from .prefetch import prefetch as prefetch_intrinsic

# Jitted code calls an intrinsic without its typing context; numba's stubs type a call as
# one to the Python function (typing context first) that never returns.
prefetch = cast(Callable[[np.ndarray, int], None], prefetch_intrinsic)

NO_SLACK = 1 << 62

# (kl, ku, fl, fu, slack) of a cut on one mask (``cut_spec``).
CutSpec = tuple[int, int, int, int, int]
# Offsets of a grid rectangle's four corner counts and their sign factors (``grid_rect``).
Rect = tuple[int, int, int, int, int, int, int, int]
# Grid rectangle rows [r0, r1) x columns [s0, s1) as (r0, s0, r1, s1) (``box_grid``).
GridBox = tuple[int, int, int, int]
# (outer, inner, area, outer slack, inner slack) of a box (``box_geometry``).
Geometry = tuple[Rect, Rect, int, int, int]
# The segment's (counts, offsets, heights, widths, edges, eq, stats) (``SegmentIndex``).
ChiArrays = tuple[np.ndarray, NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
                  NDArray[np.float64], np.ndarray, NDArray[np.float64]]
# A query range as its two cuts: (lo_t, lo_incl, hi_t, hi_incl).
RangeCut = tuple[float, bool, float, bool]


@njit(cache=True, nogil=True)
def edges_below(t: float, edges: NDArray[np.float64]) -> int:
    """Number of edges < t (edges sorted ascending)."""
    lo = 0
    hi = edges.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def query_cut(t: float, edges: NDArray[np.float64]) -> tuple[int, bool]:
    """The mask-independent part of a cut: (edges below t, whether t is an edge)."""
    k = edges_below(t, edges)
    return k, k < edges.shape[0] and edges[k] == t


@njit(cache=True, nogil=True)
def cut_spec(k: int, on_edge: bool, eq: np.ndarray, i: int, n_edges: int, vmin: float,
             vmax: float, t: float, incl: bool) -> CutSpec:
    """(kl, ku, fl, fu, slack) of the cut ``v < t`` / ``v <= t`` on mask i."""
    if t > vmax or (t == vmax and incl):        # every non-NaN pixel passes
        return n_edges, n_edges, 1, 1, NO_SLACK
    if t < vmin or (t == vmin and not incl):    # no pixel passes
        return 0, 0, 0, 0, 0
    if on_edge:
        equal = np.int64(eq[i, k])
        if not incl or equal == 0:              # stored exactly
            return k, k, 1, 1, NO_SLACK
        # v <= edge: the pixels below it, plus some of the mask's pixels equal to it.
        return k, k + 1, 1, 1, equal
    if k == 0:                                  # below the first edge
        return 0, 0, 0, 1, NO_SLACK
    return k - 1, k, 1, 1, NO_SLACK


@njit(cache=True, nogil=True)
def grid_rect(r0: int, s0: int, r1: int, s1: int, gw: int, n_cuts: int) -> Rect:
    """Grid rectangle rows [r0, r1) x columns [s0, s1) as the offsets of the four cumulative
    counts whose inclusion-exclusion gives it, each with its sign factor: 0 for a corner
    outside the grid (its offset then points at a valid count that is not used) and for all
    four when the rectangle is empty."""
    f = 1 if (r1 > r0 and s1 > s0) else 0
    ra = max(r1, 1) - 1
    sa = max(s1, 1) - 1
    rb = max(r0, 1) - 1
    sb = max(s0, 1) - 1
    fb = f if r0 > 0 else 0
    fc = f if s0 > 0 else 0
    fd = fb if s0 > 0 else 0
    return ((ra * gw + sa) * n_cuts, (rb * gw + sa) * n_cuts, (ra * gw + sb) * n_cuts,
            (rb * gw + sb) * n_cuts, f, fb, fc, fd)


@njit(cache=True, nogil=True)
def cell_rect(r: int, s: int, gw: int, n_cuts: int) -> Rect:
    return grid_rect(r, s, r + 1, s + 1, gw, n_cuts)


# The counts are read at ``counts[base + (offset + k) * stride]``: a mask's own counts from
# ``base = offsets[i]`` with stride 1, or the segment's corner planes (``plane_kernels``)
# from ``base = i`` with the segment's number of masks as the stride.
@njit(cache=True, nogil=True)
def rect_count(counts: np.ndarray, base: int, rect: Rect, k: int, stride: int = 1) -> int:
    """C(k) of a grid rectangle of the mask whose counts start at ``base``."""
    a, b, c, d, fa, fb, fc, fd = rect
    return (fa * np.int64(counts[base + (a + k) * stride])
            - fb * np.int64(counts[base + (b + k) * stride])
            - fc * np.int64(counts[base + (c + k) * stride])
            + fd * np.int64(counts[base + (d + k) * stride]))


@njit(cache=True, nogil=True)
def cut_count_bounds(counts: np.ndarray, base: int, rect: Rect, spec: CutSpec,
                     stride: int = 1) -> tuple[int, int]:
    kl, ku, fl, fu, slack = spec
    at_kl = rect_count(counts, base, rect, kl, stride)
    # A cut on an edge reads one count: not twice.
    at_ku = at_kl if ku == kl else rect_count(counts, base, rect, ku, stride)
    lower = fl * at_kl
    return lower, min(fu * at_ku, lower + slack)


@njit(cache=True, nogil=True)
def range_count_bounds(counts: np.ndarray, base: int, rect: Rect, lo: CutSpec,
                       hi: CutSpec, stride: int = 1) -> tuple[int, int]:
    """Bounds of the pixels of a grid rectangle that fail the lo cut and pass the hi cut."""
    hl, hu = cut_count_bounds(counts, base, rect, hi, stride)
    ll, lu = cut_count_bounds(counts, base, rect, lo, stride)
    return max(hl - lu, 0), hu - ll


@njit(cache=True, nogil=True)
def box_grid(h: int, w: int, cell: int, x0: int, y0: int, x1: int,
             y1: int) -> tuple[GridBox, GridBox]:
    """Grid indices (r0, s0, r1, s1) of the outer rectangle of cells covering the box and of
    the inner one inside it (may be empty)."""
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    outer = (y0 // cell, x0 // cell,
             gh if y1 == h else (y1 + cell - 1) // cell,
             gw if x1 == w else (x1 + cell - 1) // cell)
    inner = ((y0 + cell - 1) // cell, (x0 + cell - 1) // cell,
             gh if y1 == h else y1 // cell,
             gw if x1 == w else x1 // cell)
    return outer, inner


@njit(cache=True, nogil=True)
def grid_area(g: GridBox, h: int, w: int, cell: int) -> int:
    r0, s0, r1, s1 = g
    if r1 <= r0 or s1 <= s0:
        return 0
    return (min(r1 * cell, h) - r0 * cell) * (min(s1 * cell, w) - s0 * cell)


@njit(cache=True, nogil=True)
def boundary_cells(grid: tuple[int, int, int, int], box: tuple[int, int, int, int],
                   outer: GridBox, inner: GridBox) -> NDArray[np.int64]:
    """The cells of the outer grid rectangle that are not in the inner one and that the box
    covers in part, one row each: the cell's ``cell_rect`` (8 values), then its pixels
    inside the box and outside it. ``grid`` = (height, width, cell, cuts per cell) of the
    mask, ``box`` = (x0, y0, x1, y1)."""
    h, w, cell, n_cuts = grid
    x0, y0, x1, y1 = box
    gw = (w + cell - 1) // cell
    r0o, s0o, r1o, s1o = outer
    r0i, s0i, r1i, s1i = inner
    has_inner = r1i > r0i and s1i > s0i
    cells = np.empty((max(0, r1o - r0o) * max(0, s1o - s0o), 10), np.int64)
    n = 0
    for r in range(r0o, r1o):
        cy0 = r * cell
        cy1 = min(cy0 + cell, h)
        oy = min(cy1, y1) - max(cy0, y0)
        for s in range(s0o, s1o):
            if has_inner and r0i <= r < r1i and s0i <= s < s1i:
                continue
            cx0 = s * cell
            cx1 = min(cx0 + cell, w)
            covered = oy * (min(cx1, x1) - max(cx0, x0))
            if covered <= 0:
                continue
            rect = cell_rect(r, s, gw, n_cuts)
            for q in range(8):
                cells[n, q] = rect[q]
            cells[n, 8] = covered
            cells[n, 9] = (cy1 - cy0) * (cx1 - cx0) - covered
            n += 1
    return cells[:n]


@njit(cache=True, nogil=True)
def cells_bounds(counts: np.ndarray, base: int, cells: NDArray[np.int64], lo: CutSpec,
                 hi: CutSpec, stride: int = 1) -> tuple[int, int]:
    """Bounds of the in-range pixels of the box inside ``cells`` (``boundary_cells``): a
    partly covered cell adds at most its covered pixels, and at least its in-range pixels
    that cannot all lie in its uncovered part."""
    lower = 0
    upper = 0
    for c in range(cells.shape[0]):
        rect = (cells[c, 0], cells[c, 1], cells[c, 2], cells[c, 3], cells[c, 4], cells[c, 5],
                cells[c, 6], cells[c, 7])
        cl, cu = range_count_bounds(counts, base, rect, lo, hi, stride)
        lower += max(0, cl - cells[c, 9])
        upper += min(cu, cells[c, 8])
    return lower, upper


@njit(cache=True, nogil=True)
def boundary_bounds(counts: np.ndarray, base: int, grid: tuple[int, int, int, int],
                    box: tuple[int, int, int, int], outer: GridBox, inner: GridBox,
                    lo: CutSpec, hi: CutSpec) -> tuple[int, int]:
    """``cells_bounds`` of the box's ``boundary_cells`` in the mask whose counts start at
    ``base``."""
    return cells_bounds(counts, base, boundary_cells(grid, box, outer, inner), lo, hi)


@njit(cache=True, nogil=True)
def box_geometry(h: int, w: int, cell: int, x0: int, y0: int, x1: int, y1: int,
                 n_cuts: int) -> Geometry:
    """(outer, inner, area, outer slack, inner slack) of a clipped box: the grid rectangles
    (``grid_rect``) around it and inside it, its area, and how many pixels the outer one
    has beyond it and the inner one short of it."""
    gw = (w + cell - 1) // cell
    area = (x1 - x0) * (y1 - y0)
    outer, inner = box_grid(h, w, cell, x0, y0, x1, y1)
    return (grid_rect(outer[0], outer[1], outer[2], outer[3], gw, n_cuts),
            grid_rect(inner[0], inner[1], inner[2], inner[3], gw, n_cuts), area,
            grid_area(outer, h, w, cell) - area, area - grid_area(inner, h, w, cell))


@njit(cache=True, nogil=True)
def _store_geometry(g: NDArray[np.int64], geometry: Geometry) -> None:
    """The 19 values of a ``box_geometry`` in a row of the block's array."""
    outer, inner, area, outer_slack, inner_slack = geometry
    for q in range(8):
        g[q] = outer[q]
        g[8 + q] = inner[q]
    g[16] = area
    g[17] = outer_slack
    g[18] = inner_slack


@njit(cache=True, nogil=True)
def _one_geometry(rows: NDArray[np.int64], boxes: NDArray[np.int64], heights: NDArray[np.int64],
                  widths: NDArray[np.int64]) -> bool:
    """Whether every row has the first row's shape and box (a fixed box, one mask size)."""
    i0 = rows[0]
    for j in range(1, rows.shape[0]):
        i = rows[j]
        if (heights[i] != heights[i0] or widths[i] != widths[i0] or boxes[j, 0] != boxes[0, 0]
                or boxes[j, 1] != boxes[0, 1] or boxes[j, 2] != boxes[0, 2]
                or boxes[j, 3] != boxes[0, 3]):
            return False
    return True


# Masks whose counts are requested ahead (see ``prefetch``) before any is read.
PREFETCH_BLOCK = 16


# Inlined (numba IR inlining): as calls, passing the segment's arrays per mask cost ~2x.
@njit(inline="always")
def _prefetch_block(counts: np.ndarray, offsets: NDArray[np.int64],
                    grids: tuple[NDArray[np.int64], NDArray[np.int64]], cell: int,
                    rows: NDArray[np.int64], boxes: NDArray[np.int64], block: tuple[int, int],
                    cuts: tuple[int, int, int], geometry: NDArray[np.int64]) -> None:
    """Work out the box geometry of rows ``block = (start, stop)`` into ``geometry`` and ask
    for the corner counts they will read at ``cuts = (lo_k, hi_k, cuts per cell)``, so that
    their cache misses overlap; ``grids = (heights, widths)`` of the masks."""
    heights, widths = grids
    start, stop = block
    lo_k, hi_k, n_cuts = cuts
    for j in range(start, stop):
        i = rows[j]
        box = box_geometry(heights[i], widths[i], cell, boxes[j, 0], boxes[j, 1],
                           boxes[j, 2], boxes[j, 3], n_cuts)
        _store_geometry(geometry[j - start], box)
        base = offsets[i]
        outer, inner = box[0], box[1]
        for q in range(4):      # the rectangles' corner counts at both cuts
            prefetch(counts, base + outer[q] + lo_k)
            prefetch(counts, base + outer[q] + hi_k)
            prefetch(counts, base + inner[q] + lo_k)
            prefetch(counts, base + inner[q] + hi_k)


@njit(inline="always")
def _prefetch_fixed(counts: np.ndarray, offsets: NDArray[np.int64], rows: NDArray[np.int64],
                    block: tuple[int, int], cuts: tuple[int, int],
                    g: NDArray[np.int64]) -> None:
    """``_prefetch_block`` for rows that share one geometry ``g`` (``_store_geometry``):
    only the corner counts to ask for, at ``cuts = (lo_k, hi_k)``."""
    start, stop = block
    lo_k, hi_k = cuts
    for j in range(start, stop):
        base = offsets[rows[j]]
        for q in range(4):
            prefetch(counts, base + g[q] + lo_k)
            prefetch(counts, base + g[q] + hi_k)
            prefetch(counts, base + g[8 + q] + lo_k)
            prefetch(counts, base + g[8 + q] + hi_k)


@njit(inline="always")
def _coarse_bounds(counts: np.ndarray, base: int, g: NDArray[np.int64], lo: CutSpec,
                   hi: CutSpec) -> tuple[int, int, int, int]:
    """Bounds of CP for the mask whose counts start at ``base`` from the grid rectangles
    around and inside its box (geometry ``g``, see ``_store_geometry``), and the inner
    rectangle's own bounds."""
    area = g[16]
    if area <= 0:
        return 0, 0, 0, 0
    ol, ou = range_count_bounds(counts, base, (g[0], g[1], g[2], g[3], g[4], g[5], g[6],
                                               g[7]), lo, hi)
    il, iu = range_count_bounds(counts, base, (g[8], g[9], g[10], g[11], g[12], g[13],
                                               g[14], g[15]), lo, hi)
    return max(il, ol - g[17]), min(ou, iu + g[18], area), il, iu


@njit(inline="always")
def decides(lower: int, upper: int, low: float, high: float) -> bool:
    """Bounds that are tight or tell whether ``low <= CP <= high`` (NaN ends: never)."""
    return lower >= upper or (lower >= low and upper <= high) or upper < low or lower > high


@njit(cache=True, nogil=True)
def chi_bounds(chi: ChiArrays, cell: int, rows: NDArray[np.int64], boxes: NDArray[np.int64],
               cut: RangeCut, refine: bool,
               decide: tuple[NDArray[np.float64], NDArray[np.float64]],
               out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """Bounds of ``CP(mask, box, range)`` for masks ``rows`` of one segment.

    ``chi`` = (counts, offsets, heights, widths, edges, eq, stats) of the segment (see
    ``SegmentIndex``): mask i's CHI starts at ``counts[offsets[i]]``. ``boxes[j]`` = (x0, y0,
    x1, y1) already clipped to mask ``rows[j]``. ``cut`` = (lo_t, lo_incl, hi_t, hi_incl):
    the range is ``lo-cut false and hi-cut true``. Writes ``out = (lower, upper)`` with
    ``lower[j] <= CP <= upper[j]`` from the grid rectangles in and around the box; with
    ``refine``, bounds that are not tight are narrowed cell by cell along the box's edge
    (several times the cost), unless they already decide ``decide = (low, high)``:
    ``low[j] <= CP <= high[j]`` either way (NaN ends: they never do).
    """
    counts, offsets, heights, widths, edges, eq, stats = chi
    lo_t, lo_incl, hi_t, hi_incl = cut
    decide_low, decide_high = decide
    out_lower, out_upper = out
    n_rows = rows.shape[0]
    if n_rows == 0:
        return
    n_edges = edges.shape[0]
    lo_k, lo_on_edge = query_cut(lo_t, edges)
    hi_k, hi_on_edge = query_cut(hi_t, edges)
    geometry = np.empty((PREFETCH_BLOCK, 19), np.int64)
    # A block's counts are asked for before any of them is read (``_prefetch_block``): with
    # a fixed box on masks of one size too, the hardware alone overlaps too few misses.
    one = _one_geometry(rows, boxes, heights, widths)
    if one:
        _store_geometry(geometry[0], box_geometry(heights[rows[0]], widths[rows[0]], cell,
                                                  boxes[0, 0], boxes[0, 1], boxes[0, 2],
                                                  boxes[0, 3], n_edges + 1))
    if one:
        _prefetch_fixed(counts, offsets, rows, (0, min(PREFETCH_BLOCK, n_rows)),
                        (lo_k, hi_k), geometry[0])
    for start in range(0, n_rows, PREFETCH_BLOCK):
        stop = min(start + PREFETCH_BLOCK, n_rows)
        if one:     # a block ahead: its misses overlap this block's work
            _prefetch_fixed(counts, offsets, rows, (stop, min(stop + PREFETCH_BLOCK, n_rows)),
                            (lo_k, hi_k), geometry[0])
        else:
            _prefetch_block(counts, offsets, (heights, widths), cell, rows, boxes,
                            (start, stop), (lo_k, hi_k, n_edges + 1), geometry)
        for j in range(start, stop):
            i = rows[j]
            vmin = stats[i, 0]
            vmax = stats[i, 1]
            lo = cut_spec(lo_k, lo_on_edge, eq, i, n_edges, vmin, vmax, lo_t, lo_incl)
            hi = cut_spec(hi_k, hi_on_edge, eq, i, n_edges, vmin, vmax, hi_t, hi_incl)
            base = offsets[i]
            lower, upper, il, iu = _coarse_bounds(counts, base,
                                                  geometry[0 if one else j - start], lo, hi)
            if refine and not decides(lower, upper, decide_low[j], decide_high[j]):
                # Cell by cell along the box's edge, around the inner rectangle.
                box = (boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3])
                grid = (heights[i], widths[i], cell, n_edges + 1)
                outer, inner = box_grid(grid[0], grid[1], cell, box[0], box[1], box[2],
                                        box[3])
                cl, cu = boundary_bounds(counts, base, grid, box, outer, inner, lo, hi)
                lower = max(lower, il + cl)
                upper = min(upper, iu + cu)
            out_lower[j] = lower
            out_upper[j] = upper


@njit(cache=True, nogil=True)
def chi_cell_bounds(chi: ChiArrays, cell: int, rows: NDArray[np.int64], boxes: NDArray[np.int64],
                    cut: RangeCut,
                    out: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
                    ) -> None:
    """Per grid cell, bounds of the pixels of ``box`` in the range, for masks ``rows``
    (``chi``, ``cell``, ``boxes`` and ``cut`` as for ``chi_bounds``).

    ``out = (lower, upper, covered)``, each (rows, gh, gw): all rows must share one grid.
    Cells the box misses get 0; a partly covered cell gets [max(0, lower - uncovered),
    min(upper, covered)]; ``covered[j, r, s]`` is the number of the cell's pixels inside the
    box.
    """
    counts, offsets, heights, widths, edges, eq, stats = chi
    lo_t, lo_incl, hi_t, hi_incl = cut
    out_lower, out_upper, out_covered = out
    n_edges = edges.shape[0]
    n_cuts = n_edges + 1
    lo_k, lo_on_edge = query_cut(lo_t, edges)
    hi_k, hi_on_edge = query_cut(hi_t, edges)
    for j in range(rows.shape[0]):
        i = rows[j]
        h = heights[i]
        w = widths[i]
        gh = (h + cell - 1) // cell
        gw = (w + cell - 1) // cell
        x0 = boxes[j, 0]
        y0 = boxes[j, 1]
        x1 = boxes[j, 2]
        y1 = boxes[j, 3]
        base = offsets[i]
        lo = cut_spec(lo_k, lo_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], lo_t,
                      lo_incl)
        hi = cut_spec(hi_k, hi_on_edge, eq, i, n_edges, stats[i, 0], stats[i, 1], hi_t,
                      hi_incl)
        for r in range(gh):
            cy0 = r * cell
            cy1 = min(cy0 + cell, h)
            oy = min(cy1, y1) - max(cy0, y0)
            for s in range(gw):
                cx0 = s * cell
                cx1 = min(cx0 + cell, w)
                ox = min(cx1, x1) - max(cx0, x0)
                if oy <= 0 or ox <= 0:
                    out_lower[j, r, s] = 0
                    out_upper[j, r, s] = 0
                    out_covered[j, r, s] = 0
                    continue
                covered = oy * ox
                cl, cu = range_count_bounds(counts, base, cell_rect(r, s, gw, n_cuts), lo, hi)
                uncovered = (cy1 - cy0) * (cx1 - cx0) - covered
                out_lower[j, r, s] = max(0, cl - uncovered)
                out_upper[j, r, s] = min(cu, covered)
                out_covered[j, r, s] = covered
