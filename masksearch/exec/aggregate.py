"""Aggregates over a group's rows: exact values, and sound bounds from the rows' intervals."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import QueryError
from .arrays import Array, Bools, Floats, Ints

_U = 2.0 ** -52


def exact_aggregate(func: str, values: list[Any], n_rows: int) -> Any:
    """The SQL value of ``func`` over one group; ``values`` are the non-NULL argument values."""
    if func == "count":
        return n_rows
    if not values:
        return None
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        return math.nan      # NaN propagates (min/max of NaN would depend on order)
    if func == "min":
        return min(values)
    if func == "max":
        return max(values)
    if all(isinstance(v, int) for v in values):
        total = sum(values)
        if func == "sum" and not -2**63 <= total < 2**63:
            raise QueryError(f"integer overflow in SUM (the sum is {total})")
        return total if func == "sum" else math.fsum(values) / len(values)
    # Correctly rounded sums: rounding is monotone, so bounds from summed ends stay sound.
    try:
        total = math.fsum(values)
    except OverflowError:  # a partial sum beyond float64: sum exactly, round once
        exact = sum(map(Fraction, values), Fraction(0))
        return _rounded(exact if func == "sum" else exact / len(values))
    return total if func == "sum" else total / len(values)


def _rounded(value: Fraction) -> float:
    """``value`` as a float64, +-inf beyond the largest float."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def reduce_groups(op: np.ufunc, x: Array, starts: Ints, empty: float) -> Floats:
    """``op.reduceat`` per group (rows sorted by group, ``starts`` the group offsets) as
    float64, with ``empty`` for groups without rows."""
    out = np.full(len(starts) - 1, empty, dtype=np.float64)
    nonempty = starts[1:] > starts[:-1]
    if len(x) and nonempty.any():
        out[nonempty] = op.reduceat(x.astype(np.float64, copy=False), starts[:-1][nonempty])
    return out


def aggregate_bounds(func: str, lo: Floats, hi: Floats, may_null: Bools, must_null: Bools,
                     starts: Ints) -> tuple[Floats, Floats, Bools, Bools]:
    """Bounds of ``func`` per group from row intervals sorted by group (``starts``: offsets).

    Returns (lo, hi, may_null, must_null) per group.
    """
    n_groups = len(starts) - 1
    sizes = np.diff(starts)
    if func == "count":
        c = sizes.astype(np.float64)
        return c, c.copy(), np.zeros(n_groups, bool), np.zeros(n_groups, bool)
    maybe_value = ~must_null
    sure_value = ~may_null
    all_may_null = reduce_groups(np.logical_and, may_null, starts, True).astype(bool)
    all_must_null = reduce_groups(np.logical_and, must_null, starts, True).astype(bool)
    if func in ("min", "max"):
        inf = np.inf
        lo_any = reduce_groups(np.minimum, np.where(maybe_value, lo, inf), starts, inf)
        hi_any = reduce_groups(np.maximum, np.where(maybe_value, hi, -inf), starts, -inf)
        has_sure = reduce_groups(np.logical_or, sure_value, starts, False).astype(bool)
        if func == "min":
            hi_sure = reduce_groups(np.minimum, np.where(sure_value, hi, inf), starts, inf)
            return lo_any, np.where(has_sure, hi_sure, hi_any), all_may_null, all_must_null
        lo_sure = reduce_groups(np.maximum, np.where(sure_value, lo, -inf), starts, -inf)
        return np.where(has_sure, lo_sure, lo_any), hi_any, all_may_null, all_must_null
    # SUM and AVG. A row that may or may not be NULL adds between min(lo, 0) and max(hi, 0).
    unsure = may_null & ~must_null
    add_lo = np.where(sure_value, lo, np.where(unsure, np.minimum(lo, 0.0), 0.0))
    add_hi = np.where(sure_value, hi, np.where(unsure, np.maximum(hi, 0.0), 0.0))
    with np.errstate(invalid="ignore", over="ignore"):
        s_lo = reduce_groups(np.add, add_lo, starts, 0.0)
        s_hi = reduce_groups(np.add, add_hi, starts, 0.0)
        # Floating sums in any order are within (n + 2) u sum|x| of the exact sum.
        slack = (sizes + 2) * _U * reduce_groups(np.add, np.maximum(np.abs(add_lo), np.abs(add_hi)),
                                             starts, 0.0) + 1e-300
        s_lo, s_hi = s_lo - slack, s_hi + slack
        # Overflowing sums (inf - inf = NaN) bound nothing: widen to the whole line.
        s_lo, s_hi = np.where(np.isnan(s_lo), -np.inf, s_lo), np.where(np.isnan(s_hi), np.inf,
                                                                        s_hi)
        if func == "sum":
            return s_lo, s_hi, all_may_null, all_must_null
        count = reduce_groups(np.add, sure_value.astype(np.float64), starts, 0.0)
        exact_count = reduce_groups(np.logical_and, may_null == must_null, starts, True).astype(bool)
        safe = np.maximum(count, 1.0)
        a_lo = s_lo / safe
        a_hi = s_hi / safe
        # Without exact NULL-ness the count is unknown: a mean lies between its extremes.
        inf = np.inf
        m_lo = reduce_groups(np.minimum, np.where(maybe_value, lo, inf), starts, inf)
        m_hi = reduce_groups(np.maximum, np.where(maybe_value, hi, -inf), starts, -inf)
        pad = 4 * _U
        m_lo = m_lo - np.abs(m_lo) * pad - 1e-300
        m_hi = m_hi + np.abs(m_hi) * pad + 1e-300
        # A mean from overflowing sums is unknown: then it lies between its extremes.
        use_sum = exact_count & (count > 0) & np.isfinite(a_lo) & np.isfinite(a_hi)
        out_lo = np.where(use_sum, np.maximum(a_lo - np.abs(a_lo) * pad, m_lo), m_lo)
        out_hi = np.where(use_sum, np.minimum(a_hi + np.abs(a_hi) * pad, m_hi), m_hi)
    return out_lo, out_hi, all_may_null, all_must_null
