"""Per-group masks: intersect (pixel-wise min), union (max), mean, and bounds of their CP.

Bounds come from the members' CHIs by inclusion-exclusion, over the whole region and cell
by cell (the same relations hold inside every cell; summed, they see where members overlap). With A_i the pixels of member i
above the range's lower end, B_i those within its upper end, C_i those above it:
  intersect: |A_1 & ... & A_n & (B_1 | ... | B_n)|, at most min |A_i|, at least
             sum |A_i| - (n - 1) area - min |C_i|;
  union:     |(A_1 | ... | A_n) & B_1 & ... & B_n|, at most sum |A_j & B_j| and min |B_i|,
             at least max_j (|A_j & B_j| - sum over i != j of (area - |B_i|)).
NaN pixels propagate (an aggregated pixel with a NaN member is NaN, in no range), which keeps
these sets right. ``mean`` gets the trivial bound [0, area]: verification decides.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ranges import ALL, NONE, Cut
from .aggregate import reduce_groups
from .arrays import Array, Floats, Ints


def aggregate_pixels(kind: str, masks: list[Array]) -> Array:
    """The per-group mask: pixel-wise min, max, or mean (float64) of equally shaped masks.
    Min and max of float or bool masks, or of masks of several types, are float64 too (exact:
    the conversion keeps every value and order, and a NaN member makes the pixel NaN either
    way)."""
    if kind == "mean":
        mean: Floats = np.stack([m.astype(np.float64) for m in masks]).mean(axis=0)
        return mean
    if len({m.dtype for m in masks}) > 1:    # masks of several types: compared as float64
        masks = [m.astype(np.float64) for m in masks]
    op = np.minimum if kind == "intersect" else np.maximum
    out: Array = masks[0].copy()
    for m in masks[1:]:
        op(out, m, out=out)
    return out.astype(np.float64) if out.dtype.kind in "bf" else out


MemberBounds = Callable[[list[tuple[Cut, Cut]]], list[tuple[Ints, Ints]]]
MemberCells = Callable[[Cut, Cut], tuple[Ints, Ints, Ints]]


def mask_aggregate_bounds(kind: str, lo_cut: Cut, hi_cut: Cut, bounds: MemberBounds,
                          area: Ints, starts: Ints) -> tuple[Floats, Floats]:
    """Per-group (lower, upper) of CP over the aggregated mask, for the range (lo_cut, hi_cut).

    ``bounds([(lo, hi), ...])`` gives the members' (lower, upper) for each range given as
    cuts, rows sorted by group; ``area`` is each group's clipped region area; ``starts`` the
    group offsets.
    """
    area_f = area.astype(np.float64)
    sizes = np.diff(starts).astype(np.float64)
    if kind == "mean":
        return np.zeros(len(area_f)), area_f.copy()
    member_area = np.repeat(area_f, np.diff(starts))
    if kind == "intersect":
        (a_lo, a_hi), (_, c_hi) = bounds([(lo_cut, ALL), (hi_cut, ALL)])
        upper = np.minimum(reduce_groups(np.minimum, a_hi, starts, np.inf), area_f)
        lower = (reduce_groups(np.add, a_lo, starts, 0.0) - (sizes - 1) * area_f
                 - reduce_groups(np.minimum, c_hi, starts, np.inf))
        return np.maximum(lower, 0.0), upper
    (ab_lo, ab_hi), (b_lo, b_hi) = bounds([(lo_cut, hi_cut), (NONE, hi_cut)])
    upper = np.minimum.reduce([reduce_groups(np.add, ab_hi, starts, 0.0),
                               reduce_groups(np.minimum, b_hi, starts, np.inf), area_f])
    missing = member_area - b_lo                      # pixels possibly outside B_i
    total_missing = np.repeat(reduce_groups(np.add, missing, starts, 0.0), np.diff(starts))
    lower = reduce_groups(np.maximum, ab_lo - (total_missing - missing), starts, 0.0)
    return np.maximum(lower, 0.0), upper


def mask_aggregate_cell_bounds(kind: str, lo_cut: Cut, hi_cut: Cut, cells: MemberCells,
                               starts: Ints) -> tuple[Ints, Ints]:
    """Per-group (lower, upper) from the relations applied in every grid cell.

    ``cells(lo, hi)`` gives the members' per-cell (lower, upper, covered), each (M, cells),
    rows sorted by group (all of one shape).
    """
    sizes = np.diff(starts)
    first = starts[:-1]
    if kind == "mean":
        raise ValueError("no per-cell bounds for mean")
    if kind == "intersect":
        a_lo, a_hi, cov = cells(lo_cut, ALL)
        _, c_hi, _ = cells(hi_cut, ALL)
        cov_g = cov[first]
        upper = np.minimum.reduceat(a_hi, first, axis=0)
        lower = (np.add.reduceat(a_lo, first, axis=0) - (sizes - 1)[:, None] * cov_g
                 - np.minimum.reduceat(c_hi, first, axis=0))
        return np.maximum(lower, 0).sum(axis=1), upper.sum(axis=1)
    ab_lo, ab_hi, cov = cells(lo_cut, hi_cut)
    b_lo, b_hi, _ = cells(NONE, hi_cut)
    cov_g = cov[first]
    upper = np.minimum(np.minimum(np.add.reduceat(ab_hi, first, axis=0),
                                  np.minimum.reduceat(b_hi, first, axis=0)), cov_g)
    missing = cov - b_lo
    total_missing = np.repeat(np.add.reduceat(missing, first, axis=0), sizes, axis=0)
    lower = np.maximum.reduceat(ab_lo - (total_missing - missing), first, axis=0)
    return np.maximum(lower, 0).sum(axis=1), upper.sum(axis=1)
