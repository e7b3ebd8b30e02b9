"""Slow reference of the CHI bounds, computed from the pixels with NumPy.

It follows the bound rules case by case, as written in ``kernels.bound_kernels``, but takes
every rectangle's counts straight from the pixels instead of from cumulative sums, offsets
and corner factors: the fast kernel must give exactly these bounds.
"""

from __future__ import annotations

import numpy as np


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """C(k) for a block of pixels: values < edges[k], then the non-NaN pixels."""
    v = values[~np.isnan(values)]
    return np.array([int((v < e).sum()) for e in edges] + [v.size], np.int64)


def _cut_bounds(c: np.ndarray, edges: np.ndarray, eq: np.ndarray, vmin: float, vmax: float,
                t: float, incl: bool) -> tuple[int, int]:
    """Bounds of the pixels of a block satisfying ``v < t`` (``v <= t`` with ``incl``)."""
    n = len(edges)
    if t > vmax or (t == vmax and incl):
        return c[n], c[n]
    if t < vmin or (t == vmin and not incl):
        return 0, 0
    k = int(np.searchsorted(edges, t, side="left"))    # edges below t
    if k < n and edges[k] == t:
        if not incl or eq[k] == 0:
            return c[k], c[k]
        return c[k], min(c[k] + int(eq[k]), c[k + 1])
    return (c[k - 1] if k > 0 else 0), c[k]


def _range_bounds(block, edges, eq, vmin, vmax, lo, hi) -> tuple[int, int]:
    if block.size == 0:
        return 0, 0
    c = _counts(block, edges)
    hl, hu = _cut_bounds(c, edges, eq, vmin, vmax, hi.t, hi.incl)
    ll, lu = _cut_bounds(c, edges, eq, vmin, vmax, lo.t, lo.incl)
    return max(hl - lu, 0), hu - ll


def reference_bounds(pixels: np.ndarray, edges: np.ndarray, cell: int, box, lo, hi,
                     refine: bool) -> tuple[int, int]:
    """Bounds of CP over the clipped ``box`` (x0, y0, x1, y1) and the cuts ``lo``, ``hi``
    (already made exact for the dtype and snapped to the edges), from ``pixels`` as float64."""
    v = pixels.astype(np.float64)
    h, w = v.shape
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    if area <= 0:
        return 0, 0
    finite = v[~np.isnan(v)]
    vmin = float(finite.min()) if finite.size else np.inf
    vmax = float(finite.max()) if finite.size else -np.inf
    eq = np.array([int((finite == e).sum()) for e in edges])

    gy0, gx0 = y0 // cell * cell, x0 // cell * cell
    gy1 = h if y1 == h else min(-(-y1 // cell) * cell, h)
    gx1 = w if x1 == w else min(-(-x1 // cell) * cell, w)
    iy0, ix0 = -(-y0 // cell) * cell, -(-x0 // cell) * cell
    iy1 = h if y1 == h else y1 // cell * cell
    ix1 = w if x1 == w else x1 // cell * cell
    if iy1 <= iy0 or ix1 <= ix0:
        iy0 = iy1 = ix0 = ix1 = 0
    outer = v[gy0:gy1, gx0:gx1]
    inner = v[iy0:iy1, ix0:ix1]
    ol, ou = _range_bounds(outer, edges, eq, vmin, vmax, lo, hi)
    il, iu = _range_bounds(inner, edges, eq, vmin, vmax, lo, hi)
    lower = max(il, ol - (outer.size - area))
    upper = min(ou, iu + (area - inner.size), area)
    if refine and lower < upper:
        cl = cu = 0
        for cy in range(gy0, gy1, cell):
            for cx in range(gx0, gx1, cell):
                if iy0 <= cy < iy1 and ix0 <= cx < ix1:
                    continue
                c = v[cy:cy + cell, cx:cx + cell]
                covered = max(0, min(cy + cell, y1) - max(cy, y0)) * max(
                    0, min(cx + cell, x1) - max(cx, x0))
                if covered <= 0:
                    continue
                bl, bu = _range_bounds(c, edges, eq, vmin, vmax, lo, hi)
                cl += max(0, bl - (c.size - covered))
                cu += min(bu, covered)
        lower = max(lower, il + cl)
        upper = min(upper, iu + cu)
    return lower, upper
