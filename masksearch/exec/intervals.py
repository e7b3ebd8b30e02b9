"""Sound bounds of expressions from CP bounds: interval arithmetic and three-valued outcomes.

For every row, the exact value of a numeric expression lies in [lo, hi] unless it is NULL or
NaN; ``may_null``/``must_null`` say whether NULL is possible / certain, ``may_nan`` whether the
value may be NaN (inf - inf and the like). Predicates get the set of outcomes (TRUE, FALSE,
NULL) they may take.

Rounding: float operations are monotone, so applying an operation to the interval ends rounds
them the way it rounds the exact value. Integer +, -, * are exact in the evaluator (and fail
on overflow), while the ends here are float64: beyond 2**53 an end is moved one float outward
so that the exact integer stays inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
import pyarrow as pa

from ..lang import ast
from ..store.arrow_compute import cast_unsafe, fill_null
from ..store.numpy_arrow import array_numpy, scalar
from .arrays import Array, Bools, Floats
from .exact import Env, evaluate

_EXACT_INT_LIMIT = 2.0 ** 53
_PREDICATES = (ast.Compare, ast.And, ast.Or, ast.Not, ast.IsNull)


@dataclass(frozen=True)
class Interval:
    lo: Array
    hi: Array
    may_null: Array
    must_null: Array
    may_nan: Bools | None = None

    def nan(self) -> Array:
        return np.zeros(self.lo.shape, bool) if self.may_nan is None else self.may_nan


@dataclass(frozen=True)
class Outcomes:
    """Possible outcomes of a predicate per row."""

    may_true: Array
    may_false: Array
    may_null: Array

    @property
    def must_true(self) -> Array:
        return self.may_true & ~self.may_false & ~self.may_null


def _widen(lo: Array, hi: Array) -> tuple[Array, Array]:
    """Move ends beyond 2**53 one float outward (integers there are not all floats)."""
    big_lo = np.abs(lo) >= _EXACT_INT_LIMIT
    big_hi = np.abs(hi) >= _EXACT_INT_LIMIT
    if big_lo.any():
        lo = np.where(big_lo, np.nextafter(lo, -np.inf), lo)
    if big_hi.any():
        hi = np.where(big_hi, np.nextafter(hi, np.inf), hi)
    return lo, hi


def exact_interval(values: pa.Array) -> Interval:
    """An exact column as a (degenerate) interval; booleans count as 0 and 1."""
    null = array_numpy(values.is_null()).astype(bool)
    if pa.types.is_null(values.type):
        v = np.zeros(len(values))
    else:
        v = array_numpy(fill_null(cast_unsafe(values, pa.float64()), scalar(0.0)))
    nan = np.isnan(v)
    lo, hi = np.where(nan, -np.inf, v), np.where(nan, np.inf, v)
    if pa.types.is_integer(values.type):
        lo, hi = _widen(lo, hi)
    return Interval(lo, hi, null, null.copy(), nan)


def _from_outcomes(o: Outcomes) -> Interval:
    """A predicate as a number: FALSE is 0, TRUE is 1 (the order results sort in)."""
    lo = np.where(o.may_false, 0.0, 1.0)
    hi = np.where(o.may_true, 1.0, 0.0)
    return Interval(lo, hi, o.may_null, ~o.may_true & ~o.may_false)


def interval(e: ast.Expr, env: Env) -> Interval:
    """Bounds of a numeric (or boolean, as 0/1) expression for every row of ``env.rows``."""
    if isinstance(e, ast.Literal) and _small_number(e.value):
        return _constant(float(e.value), env.num_rows)   # no column of copies
    if isinstance(e, ast.Area):     # numbers straight from the regions, no Arrow round trip
        reg = env.region(e.roi)
        area = reg.area.astype(np.float64)
        return Interval(area, area.copy(), reg.null, reg.null.copy(),
                        np.zeros(len(area), bool))
    if not ast.has_terms(e):
        return exact_interval(evaluate(e, env))
    if isinstance(e, _PREDICATES):
        return _from_outcomes(outcomes(e, env))
    if isinstance(e, (ast.CP, ast.Aggregate)):
        lo, hi, may_null, must_null, *nan = env.term_bounds(e)
        return Interval(lo.astype(np.float64), hi.astype(np.float64), may_null, must_null,
                        nan[0] if nan else None)
    if isinstance(e, ast.Neg):
        a = interval(e.operand, env)
        return Interval(-a.hi, -a.lo, a.may_null, a.must_null, a.may_nan)
    if isinstance(e, ast.BinOp):
        return _arithmetic(e.op, interval(e.left, env), interval(e.right, env))
    raise TypeError(f"no bounds for {type(e).__name__}")


def _small_number(v: object) -> TypeGuard[int | float]:
    """A number literal whose float64 value is exact."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and \
        abs(v) < _EXACT_INT_LIMIT


def _constant(v: float, n: int) -> Interval:
    values = np.full(n, v)
    no = np.zeros(n, bool)
    return Interval(values, values.copy(), no, no.copy(), no.copy())


def _arithmetic(op: str, a: Interval, b: Interval) -> Interval:
    """Bounds of ``a op b`` from those of its operands."""
    may_null = a.may_null | b.may_null
    must_null = a.must_null | b.must_null
    if op == "/":
        return _divide(a, b, may_null, must_null)
    inf = np.inf
    with np.errstate(all="ignore"):
        if op == "+":
            lo, hi = a.lo + b.lo, a.hi + b.hi
            nan = ((a.hi == inf) & (b.lo == -inf)) | ((a.lo == -inf) & (b.hi == inf))
        elif op == "-":
            lo, hi = a.lo - b.hi, a.hi - b.lo
            nan = ((a.hi == inf) & (b.hi == inf)) | ((a.lo == -inf) & (b.lo == -inf))
        else:
            lo, hi = _corners(np.multiply, a, b)
            nan = (_has_zero(a) & _unbounded(b)) | (_has_zero(b) & _unbounded(a))
        lo, hi = _widen(lo, hi)
    return _checked(lo, hi, may_null, must_null, nan | a.nan() | b.nan())


def _has_zero(a: Interval) -> Array:
    return (a.lo <= 0) & (a.hi >= 0)


def _unbounded(a: Interval) -> Array:
    return np.isinf(a.lo) | np.isinf(a.hi)


def _checked(lo: Floats, hi: Floats, may_null: Bools, must_null: Bools,
             nan: Bools) -> Interval:
    """Where NaN is possible the ends say nothing: make them unbounded."""
    nan = nan | np.isnan(lo) | np.isnan(hi)
    lo = np.where(nan, -np.inf, lo)
    hi = np.where(nan, np.inf, hi)
    return Interval(lo, hi, may_null, must_null, nan)


def _corners(op: np.ufunc, a: Interval, b: Interval) -> tuple[Floats, Floats]:
    c = np.stack([op(a.lo, b.lo), op(a.lo, b.hi), op(a.hi, b.lo), op(a.hi, b.hi)])
    # 0 * inf or inf / inf is NaN: then the range is unbounded on both sides.
    undefined = np.isnan(c).any(axis=0)
    lo = np.where(undefined, -np.inf, np.where(np.isnan(c), np.inf, c).min(axis=0))
    hi = np.where(undefined, np.inf, np.where(np.isnan(c), -np.inf, c).max(axis=0))
    return lo, hi


def _divide(a: Interval, b: Interval, may_null: Bools, must_null: Bools) -> Interval:
    if len(b.lo) and b.lo.min() > 0 and a.lo.min() >= 0 and b.hi.max() < np.inf:
        # The common CP / area: a non-negative numerator over a finite positive divisor.
        # Division is monotonic there, so the corners' extremes are these two (the same
        # correctly rounded quotients ``_divide_any`` picks).
        with np.errstate(all="ignore"):
            lo, hi = a.lo / b.hi, a.hi / b.lo
        return _checked(lo, hi, may_null, must_null, a.nan() | b.nan())
    return _divide_any(a, b, may_null, must_null)


def _divide_any(a: Interval, b: Interval, may_null: Bools, must_null: Bools) -> Interval:
    b_zero_possible = _has_zero(b)
    b_only_zero = (b.lo == 0) & (b.hi == 0)
    away = ~b_zero_possible
    lo = np.full(a.lo.shape, -np.inf)
    hi = np.full(a.lo.shape, np.inf)
    with np.errstate(all="ignore"):
        if away.any():
            clo, chi = _corners(np.divide, a, b)
            lo[away], hi[away] = clo[away], chi[away]
        # A non-negative numerator over a non-negative divisor (CP / CP, CP / area): when the
        # divisor is not zero it is at most its upper end.
        nonneg = b_zero_possible & ~b_only_zero & (b.lo >= 0) & (a.lo >= 0)
        if nonneg.any():
            lo[nonneg] = a.lo[nonneg] / b.hi[nonneg]
    nan = (_unbounded(a) & _unbounded(b)) | a.nan() | b.nan()
    return _checked(lo, hi, may_null | b_zero_possible, must_null | b_only_zero, nan)


def _exact_outcomes(v: pa.Array) -> Outcomes:
    null = array_numpy(v.is_null()).astype(bool)
    if pa.types.is_null(v.type):
        t = np.zeros(len(v), bool)
    else:
        t = array_numpy(v.fill_null(scalar(False))).astype(bool)
    return Outcomes(t & ~null, ~t & ~null, null)


def outcomes(e: ast.Expr, env: Env) -> Outcomes:
    """Possible outcomes of a predicate for every row of ``env.rows``."""
    if not ast.has_terms(e):
        return _exact_outcomes(evaluate(e, env))
    if isinstance(e, ast.Compare):
        if isinstance(e.left, _PREDICATES) or isinstance(e.right, _PREDICATES):
            return _compare_truths(e.op, outcomes(e.left, env), outcomes(e.right, env))
        return _compare(e.op, interval(e.left, env), interval(e.right, env))
    if isinstance(e, ast.Not):
        return _negated(outcomes(e.operand, env))
    if isinstance(e, ast.And):
        return _all_of([outcomes(x, env) for x in e.items])
    if isinstance(e, ast.Or):    # NOT (NOT a AND NOT b)
        return _negated(_all_of([_negated(outcomes(x, env)) for x in e.items]))
    if isinstance(e, ast.IsNull):
        if isinstance(e.operand, _PREDICATES):
            o = outcomes(e.operand, env)
            may_null, must_null = o.may_null, ~o.may_true & ~o.may_false
        else:
            a = interval(e.operand, env)
            may_null, must_null = a.may_null, a.must_null
        is_null = Outcomes(may_null, ~must_null, np.zeros_like(may_null))
        return Outcomes(is_null.may_false, is_null.may_true, is_null.may_null) if e.negated \
            else is_null
    raise TypeError(f"no outcomes for {type(e).__name__}")


def _negated(o: Outcomes) -> Outcomes:
    return Outcomes(o.may_false, o.may_true, o.may_null)


def _all_of(items: list[Outcomes]) -> Outcomes:
    """AND in three-valued logic: it may be TRUE if every item may be, FALSE if one may be,
    NULL if every item may be TRUE or NULL and one may be NULL."""
    may_true = np.logical_and.reduce([o.may_true for o in items])
    may_false = np.logical_or.reduce([o.may_false for o in items])
    may_null = (np.logical_and.reduce([o.may_true | o.may_null for o in items])
                & np.logical_or.reduce([o.may_null for o in items]))
    return Outcomes(may_true, may_false, may_null)


def _compare_truths(op: str, a: Outcomes, b: Outcomes) -> Outcomes:
    """Comparing two truth values (FALSE < TRUE): try every pair of possible values."""
    fns = {"=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
           ">": np.greater, ">=": np.greater_equal}
    may_true = np.zeros(a.may_true.shape, bool)
    may_false = np.zeros(a.may_true.shape, bool)
    for x, x_possible in ((True, a.may_true), (False, a.may_false)):
        for y, y_possible in ((True, b.may_true), (False, b.may_false)):
            both = x_possible & y_possible
            if fns[op](x, y):
                may_true |= both
            else:
                may_false |= both
    return Outcomes(may_true, may_false, a.may_null | b.may_null)


def _compare(op: str, a: Interval, b: Interval) -> Outcomes:
    value_possible = ~a.must_null & ~b.must_null
    may_null = a.may_null | b.may_null
    nan = a.nan() | b.nan()
    if op in (">", ">="):
        op = {">": "<", ">=": "<="}[op]
        a, b = b, a
    if op == "<":
        may_true, may_false = a.lo < b.hi, a.hi >= b.lo
    elif op == "<=":
        may_true, may_false = a.lo <= b.hi, a.hi > b.lo
    else:
        overlap = (a.lo <= b.hi) & (b.lo <= a.hi)
        single = (a.lo == a.hi) & (b.lo == b.hi) & (a.lo == b.lo)
        may_true, may_false = (overlap, ~single) if op == "=" else (~single, overlap)
    # NaN compares FALSE, except with != where it is TRUE.
    if op == "!=":
        may_true = may_true | nan
    else:
        may_false = may_false | nan
    return Outcomes(value_possible & may_true, value_possible & may_false, may_null)
