"""NumPy twins of the query kernels: the same results, bit for bit, without Numba.

Loading Numba and its cached kernels costs a process about 0.4 s, more than a whole query
on a small database should take. ``masksearch.kernels.dispatch`` runs these twins instead
while the work is small and no Numba kernel is loaded yet. Each twin takes the arguments of
its kernel (same names, same caller-allocated outputs) and is compared with it on random
inputs in ``tests/test_twins.py``; the engine's oracle tests also run with the twins forced
on. This module imports NumPy only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

NO_SLACK = 1 << 62      # as in bound_kernels
_I64 = np.int64


# --- codec_kernels ----------------------------------------------------------------------

def unshuffle_bytes(src: NDArray[np.uint8], itemsize: int, out: NDArray[np.uint8]) -> None:
    """``codec_kernels.unshuffle_bytes``: values from byte planes."""
    n = src.shape[0] // itemsize
    m = n * itemsize
    out[:m].reshape(n, itemsize)[...] = src[:m].reshape(itemsize, n).T


# --- chi_kernels -------------------------------------------------------------------------

def _same_grid_runs(offsets: NDArray[np.int64], heights: NDArray[np.int64],
                    widths: NDArray[np.int64], cell: int,
                    n_cuts: int) -> list[tuple[int, int, int, int]]:
    """Runs (start, stop, gh, gw) of consecutive masks with one grid whose CHIs lie back
    to back, as ``offsets`` says."""
    m = offsets.shape[0] - 1
    gh = (heights[:m].astype(_I64) + cell - 1) // cell
    gw = (widths[:m].astype(_I64) + cell - 1) // cell
    runs = []
    start = 0
    for i in range(1, m + 1):
        if i == m or gh[i] != gh[start] or gw[i] != gw[start]:
            runs.append((start, i, int(gh[start]), int(gw[start])))
            start = i
    out = []
    for s, e, h, w in runs:
        size = h * w * n_cuts
        if np.all(np.diff(offsets[s:e + 1]) == size):
            out.append((s, e, h, w))
        else:                       # not back to back: mask by mask
            out.extend((i, i + 1, h, w) for i in range(s, e))
    return out


def histograms_to_chi(hist_flat: np.ndarray, offsets: NDArray[np.int64],
                      heights: NDArray[np.int64], widths: NDArray[np.int64], cell: int,
                      n_cuts: int, out_flat: np.ndarray) -> None:
    """``chi_kernels.histograms_to_chi``: cumulative sums over bins, columns and rows."""
    for s, e, gh, gw in _same_grid_runs(offsets, heights, widths, cell, n_cuts):
        size = gh * gw * n_cuts
        lo = int(offsets[s])
        if e - s == 1:
            hist = hist_flat[lo:lo + size]
            dest = out_flat[lo:int(offsets[s + 1])]
        else:
            hist = hist_flat[lo:lo + (e - s) * size]
            dest = out_flat[lo:lo + (e - s) * size]
        acc = hist.reshape(e - s, gh, gw, n_cuts).astype(_I64)
        np.cumsum(acc, axis=3, out=acc)
        np.cumsum(acc, axis=2, out=acc)
        np.cumsum(acc, axis=1, out=acc)
        dest.reshape(e - s, gh, gw, n_cuts)[...] = acc.astype(out_flat.dtype, casting="unsafe")


# --- count_kernels -----------------------------------------------------------------------

def count_in_range(pixels: np.ndarray, x0: int, y0: int, x1: int, y1: int, lo_t: float,
                   lo_incl: bool, hi_t: float, hi_incl: bool) -> int:
    """``count_kernels.count_in_range``: pixels of the box failing the lo cut and passing
    the hi cut (NaN never counts)."""
    if x1 <= x0 or y1 <= y0:
        return 0
    if y0 < 0 or x0 < 0 or y1 > pixels.shape[0] or x1 > pixels.shape[1]:
        raise IndexError("box outside the mask")
    v = pixels[y0:y1, x0:x1]
    if v.dtype != np.float64:
        v = v.astype(np.float64)
    above = v > lo_t if lo_incl else v >= lo_t
    below = v <= hi_t if hi_incl else v < hi_t
    return int(np.count_nonzero(above & below))


# --- bound_kernels -----------------------------------------------------------------------

# A cut spec per row: (kl, ku, fl, fu, slack), five int64 arrays (``bound_kernels.cut_spec``).
Spec = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# A grid rectangle per row: four offsets and four sign factors (``bound_kernels.grid_rect``).
RectArrays = tuple[np.ndarray, ...]


def _edges_below(t: float, edges: NDArray[np.float64]) -> int:
    """``bound_kernels.edges_below``: a binary search, as the kernel does it (a NaN t
    gives 0, where ``np.searchsorted`` would give the length)."""
    lo, hi = 0, edges.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _query_cut(t: float, edges: NDArray[np.float64]) -> tuple[int, bool]:
    k = _edges_below(t, edges)
    return k, bool(k < edges.shape[0] and edges[k] == t)


def _cut_spec(k: int, on_edge: bool, eq: np.ndarray, rows: NDArray[np.int64], n_edges: int,
              vmin: np.ndarray, vmax: np.ndarray, t: float, incl: bool) -> Spec:
    """``bound_kernels.cut_spec`` for every row at once."""
    n = rows.shape[0]
    every = (t > vmax) | ((t == vmax) & incl)
    none = ~every & ((t < vmin) | ((t == vmin) & (not incl)))
    if on_edge:
        equal = eq[rows, k].astype(_I64)
        exact = (not incl) | (equal == 0)
        kl = np.full(n, k, _I64)
        ku = np.where(exact, k, k + 1).astype(_I64)
        fl = np.ones(n, _I64)
        fu = np.ones(n, _I64)
        slack = np.where(exact, NO_SLACK, equal).astype(_I64)
    elif k == 0:
        kl, ku = np.zeros(n, _I64), np.zeros(n, _I64)
        fl, fu = np.zeros(n, _I64), np.ones(n, _I64)
        slack = np.full(n, NO_SLACK, _I64)
    else:
        kl, ku = np.full(n, k - 1, _I64), np.full(n, k, _I64)
        fl, fu = np.ones(n, _I64), np.ones(n, _I64)
        slack = np.full(n, NO_SLACK, _I64)
    for arr, on_every, on_none in ((kl, n_edges, 0), (ku, n_edges, 0), (fl, 1, 0), (fu, 1, 0),
                                   (slack, NO_SLACK, 0)):
        arr[every] = on_every
        arr[none] = on_none
    return kl, ku, fl, fu, slack


def _grid_rect(r0: np.ndarray, s0: np.ndarray, r1: np.ndarray, s1: np.ndarray,
               gw: np.ndarray, n_cuts: int) -> RectArrays:
    """``bound_kernels.grid_rect`` on arrays (broadcast)."""
    f = ((r1 > r0) & (s1 > s0)).astype(_I64)
    ra = np.maximum(r1, 1) - 1
    sa = np.maximum(s1, 1) - 1
    rb = np.maximum(r0, 1) - 1
    sb = np.maximum(s0, 1) - 1
    fb = np.where(r0 > 0, f, 0)
    fc = np.where(s0 > 0, f, 0)
    fd = np.where(s0 > 0, fb, 0)
    return ((ra * gw + sa) * n_cuts, (rb * gw + sa) * n_cuts, (ra * gw + sb) * n_cuts,
            (rb * gw + sb) * n_cuts, f, fb, fc, fd)


def _rect_count(counts: np.ndarray, base: np.ndarray, rect: RectArrays,
                k: np.ndarray) -> np.ndarray:
    a, b, c, d, fa, fb, fc, fd = rect
    at = base + k
    return (fa * counts[at + a].astype(_I64) - fb * counts[at + b].astype(_I64)
            - fc * counts[at + c].astype(_I64) + fd * counts[at + d].astype(_I64))


def _cut_count_bounds(counts: np.ndarray, base: np.ndarray, rect: RectArrays,
                      spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    kl, ku, fl, fu, slack = spec
    lower = fl * _rect_count(counts, base, rect, kl)
    return lower, np.minimum(fu * _rect_count(counts, base, rect, ku), lower + slack)


def _range_count_bounds(counts: np.ndarray, base: np.ndarray, rect: RectArrays, lo: Spec,
                        hi: Spec) -> tuple[np.ndarray, np.ndarray]:
    hl, hu = _cut_count_bounds(counts, base, rect, hi)
    ll, lu = _cut_count_bounds(counts, base, rect, lo)
    return np.maximum(hl - lu, 0), hu - ll


def _box_grid(h: np.ndarray, w: np.ndarray, cell: int, x0: np.ndarray, y0: np.ndarray,
              x1: np.ndarray, y1: np.ndarray) -> tuple[tuple[np.ndarray, ...],
                                                       tuple[np.ndarray, ...]]:
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    outer = (y0 // cell, x0 // cell, np.where(y1 == h, gh, (y1 + cell - 1) // cell),
             np.where(x1 == w, gw, (x1 + cell - 1) // cell))
    inner = ((y0 + cell - 1) // cell, (x0 + cell - 1) // cell,
             np.where(y1 == h, gh, y1 // cell), np.where(x1 == w, gw, x1 // cell))
    return outer, inner


def _grid_area(g: tuple[np.ndarray, ...], h: np.ndarray, w: np.ndarray,
               cell: int) -> np.ndarray:
    r0, s0, r1, s1 = g
    area = (np.minimum(r1 * cell, h) - r0 * cell) * (np.minimum(s1 * cell, w) - s0 * cell)
    return np.where((r1 <= r0) | (s1 <= s0), 0, area)


def _row_arrays(chi: tuple, rows: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    _counts, offsets, heights, widths = chi[:4]
    rows = rows.astype(_I64)
    boxes = np.asarray(boxes, _I64).reshape(-1, 4)
    return (rows, offsets[rows].astype(_I64), heights[rows].astype(_I64),
            widths[rows].astype(_I64), boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])


def _specs(chi: tuple, rows: np.ndarray, cut: tuple[float, bool, float, bool]
           ) -> tuple[Spec, Spec]:
    _counts, _offsets, _heights, _widths, edges, eq, stats = chi
    lo_t, lo_incl, hi_t, hi_incl = cut
    n_edges = edges.shape[0]
    lo_k, lo_on_edge = _query_cut(lo_t, edges)
    hi_k, hi_on_edge = _query_cut(hi_t, edges)
    vmin, vmax = stats[rows, 0], stats[rows, 1]
    return (_cut_spec(lo_k, lo_on_edge, eq, rows, n_edges, vmin, vmax, lo_t, bool(lo_incl)),
            _cut_spec(hi_k, hi_on_edge, eq, rows, n_edges, vmin, vmax, hi_t, bool(hi_incl)))


def _cells(counts: np.ndarray, n_cuts: int, cell: int, gh: int, gw: int,
           row_values: tuple[np.ndarray, ...], lo: Spec, hi: Spec
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row and grid cell (J, gh, gw): the cell's bounds of in-range pixels in the box
    and its covered pixels, as ``chi_cell_bounds`` writes them."""
    _rows, base, h, w, x0, y0, x1, y1 = (v[:, None, None] for v in row_values)
    r = np.arange(gh, dtype=_I64)[None, :, None]
    s = np.arange(gw, dtype=_I64)[None, None, :]
    cy0 = r * cell
    cy1 = np.minimum(cy0 + cell, h)
    oy = np.minimum(cy1, y1) - np.maximum(cy0, y0)
    cx0 = s * cell
    cx1 = np.minimum(cx0 + cell, w)
    ox = np.minimum(cx1, x1) - np.maximum(cx0, x0)
    hit = (oy > 0) & (ox > 0)
    covered = np.where(hit, oy * ox, 0)
    gw_row = (w + cell - 1) // cell
    rect = _grid_rect(r, s, r + 1, s + 1, gw_row, n_cuts)
    # Cells the box misses read valid counts of the mask (r < gh, s < gw); dropped below.
    lo_b = tuple(x[:, None, None] for x in lo)
    hi_b = tuple(x[:, None, None] for x in hi)
    cl, cu = _range_count_bounds(counts, base, rect, lo_b, hi_b)  # type: ignore[arg-type]
    uncovered = (cy1 - cy0) * (cx1 - cx0) - covered
    lower = np.where(hit, np.maximum(0, cl - uncovered), 0)
    upper = np.where(hit, np.minimum(cu, covered), 0)
    return lower, upper, covered


def chi_cell_bounds(chi: tuple, cell: int, rows: NDArray[np.int64], boxes: NDArray[np.int64],
                    cut: tuple[float, bool, float, bool],
                    out: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
                    ) -> None:
    """``bound_kernels.chi_cell_bounds``: per grid cell, bounds of the box's in-range
    pixels (every row on one grid, that of ``out``)."""
    if rows.shape[0] == 0:
        return
    out_lower, out_upper, out_covered = out
    n_cuts = chi[4].shape[0] + 1
    values = _row_arrays(chi, rows, boxes)
    lo, hi = _specs(chi, values[0], cut)
    gh, gw = out_lower.shape[1], out_lower.shape[2]
    lower, upper, covered = _cells(chi[0], n_cuts, cell, gh, gw, values, lo, hi)
    out_lower[...] = lower
    out_upper[...] = upper
    out_covered[...] = covered


def chi_bounds(chi: tuple, cell: int, rows: NDArray[np.int64], boxes: NDArray[np.int64],
               cut: tuple[float, bool, float, bool], refine: bool,
               decide: tuple[NDArray[np.float64], NDArray[np.float64]],
               out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``bound_kernels.chi_bounds``: CP bounds from the grid rectangles in and around each
    box, refined cell by cell along the box's edge where they decide nothing."""
    n_rows = rows.shape[0]
    if n_rows == 0:
        return
    counts = chi[0]
    n_cuts = chi[4].shape[0] + 1
    values = _row_arrays(chi, rows, boxes)
    rows64, base, h, w, x0, y0, x1, y1 = values
    lo, hi = _specs(chi, rows64, cut)
    gw = (w + cell - 1) // cell
    outer, inner = _box_grid(h, w, cell, x0, y0, x1, y1)
    area = (x1 - x0) * (y1 - y0)
    outer_rect = _grid_rect(outer[0], outer[1], outer[2], outer[3], gw, n_cuts)
    inner_rect = _grid_rect(inner[0], inner[1], inner[2], inner[3], gw, n_cuts)
    outer_slack = _grid_area(outer, h, w, cell) - area
    inner_slack = area - _grid_area(inner, h, w, cell)
    ol, ou = _range_count_bounds(counts, base, outer_rect, lo, hi)
    il, iu = _range_count_bounds(counts, base, inner_rect, lo, hi)
    empty = area <= 0
    lower = np.where(empty, 0, np.maximum(il, ol - outer_slack))
    upper = np.where(empty, 0, np.minimum(np.minimum(ou, iu + inner_slack), area))
    il = np.where(empty, 0, il)
    iu = np.where(empty, 0, iu)
    if refine:
        low, high = decide
        decided = ((lower >= upper) | ((lower >= low) & (upper <= high)) | (upper < low)
                   | (lower > high))
        todo = np.flatnonzero(~decided)
        if todo.size:
            gh = (h + cell - 1) // cell
            grids = gh[todo] * (1 << 32) + gw[todo]
            for g in np.unique(grids):
                part = todo[grids == g]
                sub = tuple(v[part] for v in values)
                sub_lo = tuple(x[part] for x in lo)
                sub_hi = tuple(x[part] for x in hi)
                cl, cu, _ = _cells(counts, n_cuts, cell, int(g >> 32), int(g & 0xFFFFFFFF),
                                   sub, sub_lo, sub_hi)
                # Cells of the inner rectangle are counted by it: left out here.
                r = np.arange(cl.shape[1])[None, :, None]
                s = np.arange(cl.shape[2])[None, None, :]
                r0i, s0i, r1i, s1i = (x[part][:, None, None] for x in inner)
                in_inner = ((r1i > r0i) & (s1i > s0i) & (r0i <= r) & (r < r1i) & (s0i <= s)
                            & (s < s1i))
                cl_sum = np.where(in_inner, 0, cl).sum(axis=(1, 2))
                cu_sum = np.where(in_inner, 0, cu).sum(axis=(1, 2))
                lower[part] = np.maximum(lower[part], il[part] + cl_sum)
                upper[part] = np.minimum(upper[part], iu[part] + cu_sum)
    out_lower, out_upper = out
    out_lower[...] = lower
    out_upper[...] = upper


# --- plane_kernels -----------------------------------------------------------------------

def transpose_counts(counts: np.ndarray, n_masks: int, start: int, stop: int,
                     planes: np.ndarray) -> None:
    """``plane_kernels.transpose_counts``: planes [start, stop) of masks' counts."""
    per_mask = counts.shape[0] // n_masks
    planes.reshape(per_mask, n_masks)[start:stop] = \
        counts.reshape(n_masks, per_mask)[:, start:stop].T


def plane_bounds(chi: tuple, planes: np.ndarray, cell: int, rows: NDArray[np.int64],
                 box: NDArray[np.int64], cut: tuple[float, bool, float, bool], refine: bool,
                 decide: tuple[NDArray[np.float64], NDArray[np.float64]],
                 out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``plane_kernels.plane_bounds``: ``chi_bounds`` with the box on every row (the
    planes hold the counts it reads, transposed)."""
    boxes = np.tile(np.asarray(box, np.int64).reshape(1, 4), (rows.shape[0], 1))
    chi_bounds(chi, cell, rows, boxes, cut, refine, decide, out)


def gather_box_rects(chi: tuple, cell: int, rows: NDArray[np.int64],
                     boxes: NDArray[np.int64], start: int, stop: int, rects: np.ndarray,
                     sizes: NDArray[np.int64]) -> None:
    """``plane_kernels.gather_box_rects``: rows [start, stop)'s rectangle counts."""
    if stop <= start:
        return
    counts = chi[0]
    n_cuts = chi[4].shape[0] + 1
    m = rows.shape[0]
    _rows, base, h, w, x0, y0, x1, y1 = _row_arrays(chi, rows[start:stop], boxes[start:stop])
    gw = (w + cell - 1) // cell
    outer, inner = _box_grid(h, w, cell, x0, y0, x1, y1)
    planes = rects.reshape(2 * n_cuts, m)
    for r, grid in enumerate((outer, inner)):
        rect = _grid_rect(grid[0], grid[1], grid[2], grid[3], gw, n_cuts)
        for k in range(n_cuts):
            planes[r * n_cuts + k, start:stop] = _rect_count(counts, base, rect,
                                                             np.full(len(base), k, _I64))
    area = (x1 - x0) * (y1 - y0)
    sizes[start:stop, 0] = area
    sizes[start:stop, 1] = _grid_area(outer, h, w, cell) - area
    sizes[start:stop, 2] = area - _grid_area(inner, h, w, cell)


def box_rect_bounds(chi: tuple, rects: np.ndarray, sizes: NDArray[np.int64],
                    rows: NDArray[np.int64], start: int, stop: int,
                    cut: tuple[float, bool, float, bool],
                    out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``plane_kernels.box_rect_bounds``: the coarse bounds of rows [start, stop)."""
    if stop <= start:
        return
    n_cuts = chi[4].shape[0] + 1
    m = rows.shape[0]
    planes = rects.reshape(2 * n_cuts, m)
    sub = rows[start:stop].astype(_I64)
    lo, hi = _specs(chi, sub, cut)
    at = np.arange(start, stop)

    def bounds(first: int) -> tuple[np.ndarray, np.ndarray]:
        def cut_bounds(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
            kl, ku, fl, fu, slack = spec
            lower = fl * planes[first + kl, at].astype(_I64)
            return lower, np.minimum(fu * planes[first + ku, at].astype(_I64), lower + slack)
        hl, hu = cut_bounds(hi)
        ll, lu = cut_bounds(lo)
        return np.maximum(hl - lu, 0), hu - ll

    ol, ou = bounds(0)
    il, iu = bounds(n_cuts)
    area, outer_slack, inner_slack = (sizes[start:stop, c] for c in range(3))
    empty = area <= 0
    out[0][start:stop] = np.where(empty, 0, np.maximum(il, ol - outer_slack))
    out[1][start:stop] = np.where(empty, 0, np.minimum(np.minimum(ou, iu + inner_slack), area))
