"""A baseline that follows the MaskSearch paper's prototype design, written from the paper's
description: masks uncompressed in memory as one NumPy array, a cumulative histogram index
(CHI) per mask, filter-verification and top-k with the CHI's bounds.

The CHI of a mask is a 2-D prefix sum over a grid of ``cell``-pixel cells and ``bins`` value
bins: ``counts[j, i, k]`` is the number of pixels above grid line ``j`` and left of grid line
``i`` whose value lies in one of the bins ``0 .. k - 1``. Values lie in [0, 1]; bin ``k``
holds those in ``(edges[k], edges[k + 1]]`` (bin 0 includes 0), so that the ranges
``(lv, uv]`` the paper's queries use are exact when their ends are edges. The count of any grid-aligned rectangle and run of bins comes from its
4 corners at 2 bin positions. For a box and range, the bounds combine the largest aligned
rectangle inside the box and the smallest one around it with the bins inside the range and
the bins touching it (as the paper does):

    lower = max(count(inside, bins inside), count(around, bins inside) - (area(around) - area(box)))
    upper = min(count(around, bins touching), count(inside, bins touching) + area(box) - area(inside))

Filters accept a mask whose lower bound satisfies the predicate, reject one whose upper bound
cannot, and count the pixels of the rest. Top-k visits masks best bound first, counts their
pixels (unless the bounds meet) and stops when no bound can beat the k-th value. IoU queries
read intersect and union masks materialized beforehand, with their own CHIs.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .workloads import Range

CELL = 28
BINS = 16
CHUNK = 128          # masks per step when building CHIs

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Chi:
    """The CHIs of ``n`` masks of one shape."""

    counts: np.ndarray      # (n, gy + 1, gx + 1, bins + 1) int32, cumulative in all three
    edges: np.ndarray       # (bins + 1,) float64
    ys: np.ndarray          # grid lines: 0, cell, 2 cell, ..., height
    xs: np.ndarray          # 0, cell, ..., width

    @property
    def nbytes(self) -> int:
        return int(self.counts.nbytes)


def build_chi(masks: np.ndarray, cell: int = CELL, bins: int = BINS) -> Chi:
    """The CHIs of ``masks`` (n, h, w) of values in [0, 1], with ``bins`` equal bins."""
    n, h, w = masks.shape
    if n and not (masks.min() >= 0 and masks.max() <= 1):
        raise ValueError("build_chi: the values must lie in [0, 1] (and not be NaN)")
    edges = np.arange(bins + 1, dtype=np.float64) / bins
    ys = np.unique(np.append(np.arange(0, h, cell), h))
    xs = np.unique(np.append(np.arange(0, w, cell), w))
    gy, gx = len(ys) - 1, len(xs) - 1
    cell_of = ((np.arange(h) // cell)[:, None] * gx + (np.arange(w) // cell)[None, :])
    counts = np.zeros((n, gy + 1, gx + 1, bins + 1), np.int32)
    for s in range(0, n, CHUNK):
        part = masks[s:s + CHUNK]
        m = len(part)
        b = np.searchsorted(edges[1:-1], part, side="left")        # exact: float64 compare
        flat = ((np.arange(m)[:, None, None] * (gy * gx) + cell_of) * bins + b).ravel()
        hist = np.bincount(flat, minlength=m * gy * gx * bins).reshape(m, gy, gx, bins)
        counts[s:s + m, 1:, 1:, 1:] = hist.cumsum(1).cumsum(2).cumsum(3)
    return Chi(counts, edges, ys, xs)


def bin_spans(edges: np.ndarray, rng: Range) -> tuple[tuple[int, int], tuple[int, int]]:
    """([ka, kb) of the bins inside ``rng``, [ka, kb) of the bins that touch it). Bin k
    holds (edges[k], edges[k + 1]], bin 0 [edges[0], edges[1]]."""
    bins = len(edges) - 1
    lo, hi = edges[:-1], edges[1:]
    first = np.arange(bins) == 0                        # the one bin closed at its low end
    above_lo = (lo > rng.lo) | ((lo == rng.lo) & (~first | rng.lo_closed))
    inside = above_lo & ((hi <= rng.hi) if rng.hi_closed else (hi < rng.hi))
    below_hi = (lo < rng.hi) | (first & (lo == rng.hi) & rng.hi_closed)
    touch = below_hi & ((hi >= rng.lo) if rng.lo_closed else (hi > rng.lo))
    return _span(inside, bins), _span(touch, bins)


def _span(keep: np.ndarray, bins: int) -> tuple[int, int]:
    k = np.flatnonzero(keep)
    return (int(k[0]), int(k[-1]) + 1) if len(k) else (0, 0)


# --- bounds -------------------------------------------------------------------------------
def _rect(c: np.ndarray, rows, ya, yb, xa, xb, k) -> np.ndarray:
    return (c[rows, yb, xb, k] - c[rows, ya, xb, k] - c[rows, yb, xa, k]
            + c[rows, ya, xa, k]).astype(np.int64)


def _count(c: np.ndarray, rows, rect: tuple, span: tuple[int, int]) -> np.ndarray:
    ya, yb, xa, xb = rect
    return _rect(c, rows, ya, yb, xa, xb, span[1]) - _rect(c, rows, ya, yb, xa, xb, span[0])


def clip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, 4) boxes clipped to the mask (empty boxes keep x1 >= x0)."""
    b = np.asarray(boxes, np.int64).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    b[:, 2] = np.maximum(b[:, 2], b[:, 0])
    b[:, 3] = np.maximum(b[:, 3], b[:, 1])
    return b


def bounds(chi: Chi, rows: np.ndarray, boxes: np.ndarray, rng: Range
           ) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of CP(mask, box, rng) for the masks ``rows``, one clipped box
    (4,) for all or one per row (n, 4)."""
    x0, y0, x1, y1 = (np.asarray(boxes)[..., i] for i in range(4))
    ys, xs = chi.ys, chi.xs
    iya, ixa = np.searchsorted(ys, y0, "left"), np.searchsorted(xs, x0, "left")
    iyb = np.maximum(np.searchsorted(ys, y1, "right") - 1, iya)
    ixb = np.maximum(np.searchsorted(xs, x1, "right") - 1, ixa)
    oya, oxa = np.searchsorted(ys, y0, "right") - 1, np.searchsorted(xs, x0, "right") - 1
    oyb, oxb = np.searchsorted(ys, y1, "left"), np.searchsorted(xs, x1, "left")
    area = (y1 - y0) * (x1 - x0)
    a_in = (ys[iyb] - ys[iya]) * (xs[ixb] - xs[ixa])
    a_out = (ys[oyb] - ys[oya]) * (xs[oxb] - xs[oxa])
    inner, outer = (iya, iyb, ixa, ixb), (oya, oyb, oxa, oxb)
    span_in, span_touch = bin_spans(chi.edges, rng)
    c = chi.counts
    lower = np.maximum(_count(c, rows, inner, span_in),
                       _count(c, rows, outer, span_in) - (a_out - area))
    upper = np.minimum(_count(c, rows, outer, span_touch),
                       _count(c, rows, inner, span_touch) + (area - a_in))
    return np.maximum(lower, 0), upper


# --- exact counts -----------------------------------------------------------------------------
def counts_in_box(masks: np.ndarray, rows: np.ndarray, box: Box, rng: Range) -> np.ndarray:
    """CP of the masks ``rows`` in one clipped box."""
    x0, y0, x1, y1 = box
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    return rng.holds(masks[rows, y0:y1, x0:x1]).sum((1, 2)).astype(np.int64)


def count_one(masks: np.ndarray, row: int, box: Box, rng: Range) -> int:
    x0, y0, x1, y1 = box
    return int(np.count_nonzero(rng.holds(masks[row, y0:y1, x0:x1])))


# --- filter and top-k with bounds --------------------------------------------------------------
def filter_rows(lower: np.ndarray, upper: np.ndarray, exact: Callable[[np.ndarray], np.ndarray],
                op: str, t: float) -> tuple[np.ndarray, int]:
    """Rows whose value satisfies ``value op t`` (op '>' or '<'), given bounds of the
    value per row and ``exact(rows)``; and how many rows were verified."""
    if op == ">":
        yes, maybe = lower > t, (upper > t) & ~(lower > t)
    elif op == "<":
        yes, maybe = upper < t, (lower < t) & ~(upper < t)
    else:
        raise ValueError(f"filter_rows: op must be '>' or '<', not {op!r}")
    check = np.flatnonzero(maybe)
    values = exact(check)
    keep = check[(values > t) if op == ">" else (values < t)]
    return np.union1d(np.flatnonzero(yes), keep), len(check)


def top_k(lower: np.ndarray, upper: np.ndarray, exact: Callable[[int], float], k: int,
          descending: bool, keys: np.ndarray | None = None
          ) -> tuple[list[int], list[float], int]:
    """The k best rows by value (ties by ascending key, default the row number), their
    values and how many were verified. Rows are visited best bound first; a row whose
    bounds meet needs no pixels; the search stops when no bound can beat the k-th."""
    keys = np.arange(len(lower)) if keys is None else keys
    sign = 1.0 if descending else -1.0
    best = upper * sign if descending else lower * sign      # bound of the signed value
    known = lower == upper
    order = np.lexsort((keys, -best))
    heap: list[tuple[float, int, int]] = []                   # (signed value, -key, row)
    verified = 0
    for row in order.tolist():
        b, key = float(best[row]), int(keys[row])
        if len(heap) == k and (b < heap[0][0] or (b == heap[0][0] and -key < heap[0][1])):
            break
        if known[row]:
            value = float(lower[row])
        else:
            value = exact(row)
            verified += 1
        item = (sign * value, -key, row)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    ranked = sorted(heap, reverse=True)
    return ([int(keys[r]) for _, _, r in ranked], [sign * v for v, _, _ in ranked], verified)
