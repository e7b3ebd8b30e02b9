"""CP bounds from the CHI (layout in ``chi_kernels``).

A query cut is ``value < t`` (``incl`` False) or ``value <= t``. For one mask and one grid
rectangle, the pixels F satisfying the cut are bracketed by the rectangle's stored counts C(k):

    F >= fl * C(kl)        F <= min(fu * C(ku), fl * C(kl) + slack)

The *cut spec* (kl, ku, fl, fu, slack) depends on the query and on the mask's min, max and
edge counts only. Every case (no pixel, every pixel, a cut on an edge, a cut between edges)
takes this one form, so the per-mask loop reads the same counts in the same way whatever the
data: branching on the case per mask cost most of the time, in mispredictions.
"""

import numpy as np
from numba import njit

from .prefetch import prefetch

NO_SLACK = 1 << 62


@njit(cache=True, nogil=True)
def edges_below(t, edges):
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
def query_cut(t, edges):
    """The mask-independent part of a cut: (edges below t, whether t is an edge)."""
    k = edges_below(t, edges)
    return k, k < edges.shape[0] and edges[k] == t


@njit(cache=True, nogil=True)
def cut_spec(k, on_edge, eq, i, n_edges, vmin, vmax, t, incl):
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
def grid_rect(r0, s0, r1, s1, gw, n_cuts):
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
def cell_rect(r, s, gw, n_cuts):
    return grid_rect(r, s, r + 1, s + 1, gw, n_cuts)


@njit(cache=True, nogil=True)
def rect_count(counts, base, rect, k):
    """C(k) of a grid rectangle of the mask whose counts start at ``base``."""
    a, b, c, d, fa, fb, fc, fd = rect
    return (fa * np.int64(counts[base + a + k]) - fb * np.int64(counts[base + b + k])
            - fc * np.int64(counts[base + c + k]) + fd * np.int64(counts[base + d + k]))


@njit(cache=True, nogil=True)
def cut_count_bounds(counts, base, rect, spec):
    kl, ku, fl, fu, slack = spec
    lower = fl * rect_count(counts, base, rect, kl)
    return lower, min(fu * rect_count(counts, base, rect, ku), lower + slack)


@njit(cache=True, nogil=True)
def range_count_bounds(counts, base, rect, lo, hi):
    """Bounds of the pixels of a grid rectangle that fail the lo cut and pass the hi cut."""
    hl, hu = cut_count_bounds(counts, base, rect, hi)
    ll, lu = cut_count_bounds(counts, base, rect, lo)
    return max(hl - lu, 0), hu - ll


@njit(cache=True, nogil=True)
def box_grid(h, w, cell, x0, y0, x1, y1):
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
def grid_area(g, h, w, cell):
    r0, s0, r1, s1 = g
    if r1 <= r0 or s1 <= s0:
        return 0
    return (min(r1 * cell, h) - r0 * cell) * (min(s1 * cell, w) - s0 * cell)


@njit(cache=True, nogil=True)
def boundary_bounds(counts, base, h, w, cell, gw, n_cuts, x0, y0, x1, y1, outer, inner,
                    lo, hi):
    """Bounds of the in-range pixels of the box inside the cells of the outer grid rectangle
    that are not in the inner one: a partly covered cell adds at most its covered pixels,
    and at least its in-range pixels that cannot all lie in its uncovered part."""
    r0o, s0o, r1o, s1o = outer
    r0i, s0i, r1i, s1i = inner
    lower = 0
    upper = 0
    has_inner = r1i > r0i and s1i > s0i
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
            cl, cu = range_count_bounds(counts, base, cell_rect(r, s, gw, n_cuts), lo, hi)
            uncovered = (cy1 - cy0) * (cx1 - cx0) - covered
            lower += max(0, cl - uncovered)
            upper += min(cu, covered)
    return lower, upper


@njit(cache=True, nogil=True)
def box_geometry(h, w, cell, x0, y0, x1, y1, n_cuts):
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
def _store_geometry(g, geometry):
    """The 19 values of a ``box_geometry`` in a row of the block's array."""
    outer, inner, area, outer_slack, inner_slack = geometry
    for q in range(8):
        g[q] = outer[q]
        g[8 + q] = inner[q]
    g[16] = area
    g[17] = outer_slack
    g[18] = inner_slack


@njit(cache=True, nogil=True)
def _one_geometry(rows, boxes, heights, widths):
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


@njit(cache=True, nogil=True)
def chi_bounds(counts, offsets, heights, widths, cell, edges, eq, stats, rows, boxes,
               lo_t, lo_incl, hi_t, hi_incl, refine, decide_low, decide_high, out_lower,
               out_upper):
    """Bounds of ``CP(mask, box, range)`` for masks ``rows`` of one segment.

    ``counts`` is the segment's flat count array, mask i's CHI starting at ``offsets[i]``.
    ``boxes[j]`` = (x0, y0, x1, y1) already clipped to mask ``rows[j]`` (x0 <= x1, y0 <= y1).
    The range is ``lo-cut false and hi-cut true``. Writes ``out_lower[j] <= CP <=
    out_upper[j]`` from the grid rectangles in and around the box; with ``refine``, bounds
    that are not tight are narrowed cell by cell along the box's edge (several times the
    cost), unless they already decide ``decide_low[j] <= CP <= decide_high[j]`` either way
    (NaN ends: they never do).
    """
    n_rows = rows.shape[0]
    if n_rows == 0:
        return
    n_edges = edges.shape[0]
    n_cuts = n_edges + 1
    lo_k, lo_on_edge = query_cut(lo_t, edges)
    hi_k, hi_on_edge = query_cut(hi_t, edges)
    geometry = np.empty((PREFETCH_BLOCK, 19), np.int64)
    # With a fixed box on masks of one size, the counts read are a fixed stride apart and
    # the hardware prefetches them; with a box per mask, a block's counts are asked for
    # before any of them is read, so that their cache misses overlap.
    one = _one_geometry(rows, boxes, heights, widths)
    if one:
        _store_geometry(geometry[0], box_geometry(heights[rows[0]], widths[rows[0]], cell,
                                                  boxes[0, 0], boxes[0, 1], boxes[0, 2],
                                                  boxes[0, 3], n_cuts))
    for start in range(0, n_rows, PREFETCH_BLOCK):
        stop = min(start + PREFETCH_BLOCK, n_rows)
        if not one:
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
        for j in range(start, stop):
            g = geometry[0 if one else j - start]
            area = g[16]
            if area <= 0:
                out_lower[j] = 0
                out_upper[j] = 0
                continue
            i = rows[j]
            base = offsets[i]
            vmin = stats[i, 0]
            vmax = stats[i, 1]
            lo = cut_spec(lo_k, lo_on_edge, eq, i, n_edges, vmin, vmax, lo_t, lo_incl)
            hi = cut_spec(hi_k, hi_on_edge, eq, i, n_edges, vmin, vmax, hi_t, hi_incl)
            ol, ou = range_count_bounds(counts, base, (g[0], g[1], g[2], g[3], g[4], g[5],
                                                       g[6], g[7]), lo, hi)
            il, iu = range_count_bounds(counts, base, (g[8], g[9], g[10], g[11], g[12],
                                                       g[13], g[14], g[15]), lo, hi)
            lower = max(il, ol - g[17])
            upper = min(ou, iu + g[18], area)
            low = decide_low[j]
            high = decide_high[j]
            if refine and lower < upper and not ((lower >= low and upper <= high)
                                                  or upper < low or lower > high):
                h = heights[i]
                w = widths[i]
                x0, y0, x1, y1 = boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3]
                outer, inner = box_grid(h, w, cell, x0, y0, x1, y1)
                cl, cu = boundary_bounds(counts, base, h, w, cell, (w + cell - 1) // cell,
                                         n_cuts, x0, y0, x1, y1, outer, inner, lo, hi)
                lower = max(lower, il + cl)
                upper = min(upper, iu + cu)
            out_lower[j] = lower
            out_upper[j] = upper


@njit(cache=True, nogil=True)
def chi_cell_bounds(counts, offsets, heights, widths, cell, edges, eq, stats, rows, boxes,
                    lo_t, lo_incl, hi_t, hi_incl, out_lower, out_upper, out_covered):
    """Per grid cell, bounds of the pixels of ``box`` in the range, for masks ``rows``.

    All rows must share one grid (gh, gw) = out_lower.shape[1:]. Cells the box misses get 0;
    a partly covered cell gets [max(0, lower - uncovered), min(upper, covered)].
    ``out_covered[j, r, s]`` is the number of the cell's pixels inside the box.
    """
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
