"""Build the Cumulative Histogram Index (CHI) of masks (bounds from it: ``bound_kernels``).

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
from numpy.typing import NDArray


@njit(cache=True, nogil=True)
def _edges_le_guided(v: float, edges: NDArray[np.float64], first: float,
                     inv_step: float) -> int:
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
def _histogram(pixels: np.ndarray, edges: NDArray[np.float64], cell: int, counts: np.ndarray,
               eq: np.ndarray) -> tuple[int, float, float]:
    """Per cell, pixels by value bin (a pixel with k = #edges <= v satisfies cuts k..E, so
    it counts in bin k), and ``eq``; returns (non-NaN pixels, vmin, vmax)."""
    h, w = pixels.shape
    vmin = np.inf
    vmax = -np.inf
    nonnan = 0
    n_edges = edges.shape[0]
    first = edges[0]
    inv_step = (n_edges - 1) / (edges[n_edges - 1] - first) if n_edges > 1 else 0.0
    gw = counts.shape[1]
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
    return nonnan, vmin, vmax


@njit(cache=True, nogil=True)
def _accumulate(counts: np.ndarray) -> None:
    """Per-cell histograms -> cumulative counts: over value bins, columns, then rows."""
    gh, gw, nk = counts.shape
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


@njit(cache=True, nogil=True)
def build_chi_one(pixels: np.ndarray, edges: NDArray[np.float64], cell: int, counts: np.ndarray,
                  eq: np.ndarray, stats: NDArray[np.float64]) -> int:
    """Fill ``counts`` (gh, gw, E+1), ``eq`` (E,) and ``stats`` [vmin, vmax] for one 2-D mask.

    ``counts`` must be zeroed by the caller. Returns the number of non-NaN pixels.
    """
    nonnan, vmin, vmax = _histogram(pixels, edges, cell, counts, eq)
    _accumulate(counts)
    stats[0] = vmin
    stats[1] = vmax
    return nonnan


@njit(cache=True, nogil=True)
def _mask_counts(counts_flat: np.ndarray, offsets: NDArray[np.int64], heights: NDArray[np.int64],
                 widths: NDArray[np.int64], cell: int, n_cuts: int,
                 i: int) -> tuple[int, int, int, int, np.ndarray]:
    """Mask i's shape, grid and its CHI as a (gh, gw, n_cuts) view of the flat counts."""
    h = heights[i]
    w = widths[i]
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    start = offsets[i]
    return h, w, gh, gw, counts_flat[start:start + gh * gw * n_cuts].reshape((gh, gw, n_cuts))


@njit(cache=True, nogil=True)
def chi_to_histograms(counts_flat: np.ndarray, offsets: NDArray[np.int64],
                      heights: NDArray[np.int64], widths: NDArray[np.int64], cell: int,
                      n_cuts: int, out_flat: np.ndarray) -> None:
    """Undo the three cumulative sums of every mask's CHI: ``out_flat`` gets, per cell, the
    number of pixels in each value bin (the last bin: NaN pixels count nowhere, so it holds
    the non-NaN pixels at or above the top edge). Small numbers: they compress well."""
    for i in range(offsets.shape[0] - 1):
        _h, _w, gh, gw, counts = _mask_counts(counts_flat, offsets, heights, widths, cell,
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
def histograms_to_chi(hist_flat: np.ndarray, offsets: NDArray[np.int64],
                      heights: NDArray[np.int64], widths: NDArray[np.int64], cell: int,
                      n_cuts: int, out_flat: np.ndarray) -> None:
    """The inverse of ``chi_to_histograms``: cumulative sums over bins, columns and rows."""
    for i in range(offsets.shape[0] - 1):
        _h, _w, gh, gw, hist = _mask_counts(hist_flat, offsets, heights, widths, cell, n_cuts, i)
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


@njit(cache=True, nogil=True)
def value_range(pixels: np.ndarray, out: NDArray[np.float64]) -> None:
    """``out[:] = [min, max]`` of a 2-D mask's non-NaN values, as ``np.nanmin`` and
    ``np.nanmax`` give them (NaN, NaN when every value is NaN), in one pass."""
    vmin = np.inf
    vmax = -np.inf
    seen = False
    h, w = pixels.shape
    for y in range(h):
        for x in range(w):
            v = np.float64(pixels[y, x])
            if v != v:
                continue
            seen = True
            vmin = min(vmin, v)
            vmax = max(vmax, v)
    out[0] = vmin if seen else np.nan
    out[1] = vmax if seen else np.nan
