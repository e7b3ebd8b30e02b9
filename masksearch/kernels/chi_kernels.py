"""Build the Cumulative Histogram Index (CHI) of masks and derive CP bounds from it.

Layout of one mask's CHI (H x W pixels, cell size c, E value edges):
``counts[r, s, k]`` for ``r < gh = ceil(H/c)``, ``s < gw = ceil(W/c)``, ``k <= E`` is the number
of pixels in rows ``[0, min((r+1)c, H))`` and columns ``[0, min((s+1)c, W))`` that satisfy cut
``k``: ``value < edges[k]`` for ``k < E``, and "value is not NaN" for ``k == E``.
Alongside: ``eq[k]`` the number of pixels of the whole mask equal to ``edges[k]``, and the
mask's non-NaN ``vmin``/``vmax``. A query cut is ``value < t`` (``incl`` False) or
``value <= t`` (``incl`` True).
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _edges_lt(v, edges):
    """Number of edges < v (edges sorted ascending)."""
    lo = 0
    hi = edges.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _edges_le_guided(v, edges, first, inv_step):
    """``_edges_le`` starting from a guess for evenly spaced edges, corrected to be exact."""
    n = edges.shape[0]
    if v < first:
        return 0
    g = (v - first) * inv_step
    # The guess may be NaN (inf * 0) or out of range: start at the end then, never index off.
    k = int(g) + 1 if 0.0 <= g < n else n
    while k > 0 and edges[k - 1] > v:
        k -= 1
    while k < n and edges[k] <= v:
        k += 1
    return k


@njit(cache=True, nogil=True)
def build_chi_one(pixels, edges, cell, counts, eq, stats):
    """Fill ``counts`` (gh, gw, E+1), ``eq`` (E,) and ``stats`` [vmin, vmax] for one 2-D mask.

    ``counts`` must be zeroed by the caller. Returns the number of non-NaN pixels.
    """
    h, w = pixels.shape
    vmin = np.inf
    vmax = -np.inf
    nonnan = 0
    n_edges = edges.shape[0]
    first = edges[0]
    inv_step = (n_edges - 1) / (edges[n_edges - 1] - first) if n_edges > 1 else 0.0
    gh, gw, nk = counts.shape
    # Histogram: pixel with k = #edges <= v satisfies cuts k..E, so count it in bin k.
    # Columns are walked cell by cell: no division per pixel.
    for y in range(h):
        r = y // cell
        for s in range(gw):
            for x in range(s * cell, min((s + 1) * cell, w)):
                v = np.float64(pixels[y, x])
                if v != v:
                    continue
                nonnan += 1
                vmin = min(vmin, v)
                vmax = max(vmax, v)
                k = _edges_le_guided(v, edges, first, inv_step)
                counts[r, s, k] += 1
                if k > 0 and edges[k - 1] == v:
                    eq[k - 1] += 1
    # Cumulative over value bins, then over columns, then over rows.
    for r in range(gh):
        for s in range(gw):
            for k in range(1, nk):
                counts[r, s, k] += counts[r, s, k - 1]
    for r in range(gh):
        for s in range(1, gw):
            for k in range(nk):
                counts[r, s, k] += counts[r, s - 1, k]
    for r in range(1, gh):
        for s in range(gw):
            for k in range(nk):
                counts[r, s, k] += counts[r - 1, s, k]
    stats[0] = vmin
    stats[1] = vmax
    return nonnan


@njit(cache=True, nogil=True)
def _rect_value(counts, r0, s0, r1, s1, k):
    """Count of cut k in grid rectangle rows [r0, r1), cols [s0, s1) (grid-boundary indices)."""
    if r1 <= r0 or s1 <= s0:
        return 0
    # int64 first: the stored counts are unsigned and narrow.
    v = np.int64(counts[r1 - 1, s1 - 1, k])
    if r0 > 0:
        v -= np.int64(counts[r0 - 1, s1 - 1, k])
    if s0 > 0:
        v -= np.int64(counts[r1 - 1, s0 - 1, k])
    if r0 > 0 and s0 > 0:
        v += np.int64(counts[r0 - 1, s0 - 1, k])
    return v


# A cut plan says how F(cut) (pixels satisfying the cut) follows from a rectangle's stored
# counts; it depends on the mask and the query only, so it is worked out once per mask.
_ZERO, _TOTAL, _EXACT, _EDGE_INCL, _BETWEEN = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def _cut_plan(edges, eq, vmin, vmax, t, incl):
    """(kind, k, slack) for the cut ``v < t`` / ``v <= t`` on one mask."""
    n_edges = edges.shape[0]
    if t > vmax or (t == vmax and incl):
        return _TOTAL, n_edges, 0
    if t < vmin or (t == vmin and not incl):
        return _ZERO, 0, 0
    k = _edges_lt(t, edges)
    if k < n_edges and edges[k] == t:
        if not incl or eq[k] == 0:
            return _EXACT, k, 0
        return _EDGE_INCL, k, np.int64(eq[k])
    return _BETWEEN, k, 0


@njit(cache=True, nogil=True)
def _cut_bounds(counts, r0, s0, r1, s1, n_edges, kind, k, slack):
    """Lower and upper bound of F(cut) inside a grid rectangle, following a cut plan."""
    if kind == _ZERO:
        return 0, 0
    if kind == _TOTAL:
        total = _rect_value(counts, r0, s0, r1, s1, n_edges)
        return total, total
    if kind == _EXACT:
        exact = _rect_value(counts, r0, s0, r1, s1, k)
        return exact, exact
    if kind == _EDGE_INCL:
        exact = _rect_value(counts, r0, s0, r1, s1, k)
        nxt = _rect_value(counts, r0, s0, r1, s1, k + 1)
        return exact, min(exact + slack, nxt)
    lower = _rect_value(counts, r0, s0, r1, s1, k - 1) if k > 0 else 0
    upper = _rect_value(counts, r0, s0, r1, s1, k)
    return lower, upper


@njit(cache=True, nogil=True)
def _range_bounds(counts, r0, s0, r1, s1, n_edges, lo_kind, lo_k, lo_slack,
                  hi_kind, hi_k, hi_slack):
    """Bounds of #pixels in the rectangle with lo-cut false and hi-cut true."""
    hl, hu = _cut_bounds(counts, r0, s0, r1, s1, n_edges, hi_kind, hi_k, hi_slack)
    ll, lu = _cut_bounds(counts, r0, s0, r1, s1, n_edges, lo_kind, lo_k, lo_slack)
    lower = hl - lu
    if lower < 0:
        lower = 0
    return lower, hu - ll


@njit(cache=True, nogil=True)
def _mask_counts(counts_flat, offsets, heights, widths, cell, n_cuts, i):
    """Mask i's shape, grid and its CHI as a (gh, gw, n_cuts) view of the flat counts."""
    h = heights[i]
    w = widths[i]
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    start = offsets[i]
    return h, w, gh, gw, counts_flat[start:start + gh * gw * n_cuts].reshape((gh, gw, n_cuts))


@njit(cache=True, nogil=True)
def _boundary_bounds(counts, h, w, cell, x0, y0, x1, y1, r0o, s0o, r1o, s1o, r0i, s0i, r1i,
                     s1i, n_edges, lo_kind, lo_k, lo_slack, hi_kind, hi_k, hi_slack):
    """Bounds of the in-range pixels of the box inside the cells of the outer grid rectangle
    that are not in the inner one."""
    lower = 0
    upper = 0
    inner = r1i > r0i and s1i > s0i
    for r in range(r0o, r1o):
        cy0 = r * cell
        cy1 = min(cy0 + cell, h)
        oy = min(cy1, y1) - max(cy0, y0)
        for s in range(s0o, s1o):
            if inner and r0i <= r < r1i and s0i <= s < s1i:
                continue
            cx0 = s * cell
            cx1 = min(cx0 + cell, w)
            covered = oy * (min(cx1, x1) - max(cx0, x0))
            if covered <= 0:
                continue
            cl, cu = _range_bounds(counts, r, s, r + 1, s + 1, n_edges, lo_kind, lo_k,
                                   lo_slack, hi_kind, hi_k, hi_slack)
            uncovered = (cy1 - cy0) * (cx1 - cx0) - covered
            lower += max(0, cl - uncovered)
            upper += min(cu, covered)
    return lower, upper


@njit(cache=True, nogil=True)
def chi_bounds(counts_flat, offsets, heights, widths, cell, edges, eq, stats,
               rows, boxes, lo_t, lo_incl, hi_t, hi_incl, refine, out_lower, out_upper):
    """Bounds of ``CP(mask, box, range)`` for masks ``rows`` of one segment.

    ``boxes[j]`` = (x0, y0, x1, y1) already clipped to mask ``rows[j]`` (x0 <= x1, y0 <= y1).
    The range is ``lo-cut false and hi-cut true``: lo cut ``v < lo_t`` (``lo_incl`` False) or
    ``v <= lo_t``; hi cut likewise. Writes ``out_lower[j] <= CP <= out_upper[j]``.
    With ``refine``, bounds that are not tight are narrowed cell by cell along the box's edge
    (about 5x the cost, so callers refine only the masks that stay undecided).
    """
    n_cuts = edges.shape[0] + 1
    for j in range(rows.shape[0]):
        i = rows[j]
        h, w, gh, gw, counts = _mask_counts(counts_flat, offsets, heights, widths, cell,
                                            n_cuts, i)
        x0 = boxes[j, 0]
        y0 = boxes[j, 1]
        x1 = boxes[j, 2]
        y1 = boxes[j, 3]
        area = (x1 - x0) * (y1 - y0)
        if area <= 0:
            out_lower[j] = 0
            out_upper[j] = 0
            continue
        # Outer grid rectangle covers the box; inner one lies inside it.
        r0o = y0 // cell
        s0o = x0 // cell
        r1o = gh if y1 == h else (y1 + cell - 1) // cell
        s1o = gw if x1 == w else (x1 + cell - 1) // cell
        r0i = (y0 + cell - 1) // cell
        s0i = (x0 + cell - 1) // cell
        r1i = gh if y1 == h else y1 // cell
        s1i = gw if x1 == w else x1 // cell
        oy0 = r0o * cell
        ox0 = s0o * cell
        oy1 = min(r1o * cell, h)
        ox1 = min(s1o * cell, w)
        outer_area = (oy1 - oy0) * (ox1 - ox0)
        inner_area = 0
        if r1i > r0i and s1i > s0i:
            inner_area = (min(r1i * cell, h) - r0i * cell) * (min(s1i * cell, w) - s0i * cell)
        vmin = stats[i, 0]
        vmax = stats[i, 1]
        lo_kind, lo_k, lo_slack = _cut_plan(edges, eq[i], vmin, vmax, lo_t, lo_incl)
        hi_kind, hi_k, hi_slack = _cut_plan(edges, eq[i], vmin, vmax, hi_t, hi_incl)
        n_edges = edges.shape[0]
        ol, ou = _range_bounds(counts, r0o, s0o, r1o, s1o, n_edges, lo_kind, lo_k, lo_slack,
                               hi_kind, hi_k, hi_slack)
        il, iu = _range_bounds(counts, r0i, s0i, r1i, s1i, n_edges, lo_kind, lo_k, lo_slack,
                               hi_kind, hi_k, hi_slack)
        lower = max(il, ol - (outer_area - area))
        upper = min(ou, iu + (area - inner_area), area)
        if refine and lower < upper:
            # Per-cell reasoning over the cells the box cuts: a partly covered cell adds at
            # most its covered pixels, and at least its in-range pixels that cannot all lie
            # in its uncovered part.
            cl, cu = _boundary_bounds(counts, h, w, cell, x0, y0, x1, y1, r0o, s0o, r1o, s1o,
                                      r0i, s0i, r1i, s1i, n_edges, lo_kind, lo_k, lo_slack,
                                      hi_kind, hi_k, hi_slack)
            lower = max(lower, il + cl)
            upper = min(upper, iu + cu)
        out_lower[j] = lower
        out_upper[j] = upper


@njit(cache=True, nogil=True)
def chi_cell_bounds(counts_flat, offsets, heights, widths, cell, edges, eq, stats, rows, boxes,
                    lo_t, lo_incl, hi_t, hi_incl, out_lower, out_upper, out_covered):
    """Per grid cell, bounds of the pixels of ``box`` in the range, for masks ``rows``.

    All rows must share one grid (gh, gw) = out_lower.shape[1:]. Cells the box misses get 0;
    a partly covered cell gets [max(0, lower - uncovered), min(upper, covered)].
    ``out_covered[j, r, s]`` is the number of the cell's pixels inside the box.
    """
    n_cuts = edges.shape[0] + 1
    n_edges = edges.shape[0]
    for j in range(rows.shape[0]):
        i = rows[j]
        h, w, gh, gw, counts = _mask_counts(counts_flat, offsets, heights, widths, cell,
                                            n_cuts, i)
        x0 = boxes[j, 0]
        y0 = boxes[j, 1]
        x1 = boxes[j, 2]
        y1 = boxes[j, 3]
        lo_kind, lo_k, lo_slack = _cut_plan(edges, eq[i], stats[i, 0], stats[i, 1],
                                            lo_t, lo_incl)
        hi_kind, hi_k, hi_slack = _cut_plan(edges, eq[i], stats[i, 0], stats[i, 1],
                                            hi_t, hi_incl)
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
                cl, cu = _range_bounds(counts, r, s, r + 1, s + 1, n_edges, lo_kind, lo_k,
                                       lo_slack, hi_kind, hi_k, hi_slack)
                uncovered = (cy1 - cy0) * (cx1 - cx0) - covered
                out_lower[j, r, s] = max(0, cl - uncovered)
                out_upper[j, r, s] = min(cu, covered)
                out_covered[j, r, s] = covered


@njit(cache=True, nogil=True)
def chi_to_histograms(counts_flat, offsets, heights, widths, cell, n_cuts, out_flat):
    """Undo the three cumulative sums of every mask's CHI: ``out_flat`` gets, per cell, the
    number of pixels in each value bin (the last bin: NaN pixels count nowhere, so it holds
    the non-NaN pixels at or above the top edge). Small numbers: they compress well."""
    for i in range(offsets.shape[0] - 1):
        h, w, gh, gw, counts = _mask_counts(counts_flat, offsets, heights, widths, cell,
                                            n_cuts, i)
        out = out_flat[offsets[i]:offsets[i + 1]].reshape((gh, gw, n_cuts))
        for r in range(gh):
            for s in range(gw):
                for k in range(n_cuts):
                    v = np.int64(counts[r, s, k])
                    if r > 0:
                        v -= counts[r - 1, s, k]
                    if s > 0:
                        v -= counts[r, s - 1, k]
                    if r > 0 and s > 0:
                        v += counts[r - 1, s - 1, k]
                    if k > 0:
                        u = np.int64(counts[r, s, k - 1])
                        if r > 0:
                            u -= counts[r - 1, s, k - 1]
                        if s > 0:
                            u -= counts[r, s - 1, k - 1]
                        if r > 0 and s > 0:
                            u += counts[r - 1, s - 1, k - 1]
                        v -= u
                    out[r, s, k] = v


@njit(cache=True, nogil=True)
def histograms_to_chi(hist_flat, offsets, heights, widths, cell, n_cuts, out_flat):
    """The inverse of ``chi_to_histograms``: cumulative sums over bins, columns and rows."""
    for i in range(offsets.shape[0] - 1):
        h, w, gh, gw, hist = _mask_counts(hist_flat, offsets, heights, widths, cell, n_cuts, i)
        out = out_flat[offsets[i]:offsets[i + 1]].reshape((gh, gw, n_cuts))
        for r in range(gh):
            for s in range(gw):
                acc = 0
                for k in range(n_cuts):
                    acc += hist[r, s, k]
                    v = acc
                    if r > 0:
                        v += out[r - 1, s, k]
                    if s > 0:
                        v += out[r, s - 1, k]
                    if r > 0 and s > 0:
                        v -= out[r - 1, s - 1, k]
                    out[r, s, k] = v
