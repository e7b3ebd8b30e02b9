"""Sound bounds of expressions from CP bounds: interval arithmetic and three-valued outcomes.

For every row, the exact value of a numeric expression lies in [lo, hi] unless it is NULL;
``may_null``/``must_null`` say whether NULL is possible / certain. Predicates get the set of
outcomes (TRUE, FALSE, NULL) they may take. Rounding is no threat to soundness: the exact
evaluator uses the same float64 operations, and rounding is monotone, so applying an
operation to the interval ends rounds them the same way it rounds the exact value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..exec.exact import Env, evaluate
from ..lang import ast

_EXACT_INT_LIMIT = 2.0 ** 53


@dataclass(frozen=True)
class Interval:
    lo: np.ndarray
    hi: np.ndarray
    may_null: np.ndarray
    must_null: np.ndarray


@dataclass(frozen=True)
class Outcomes:
    """Possible outcomes of a predicate per row."""

    may_true: np.ndarray
    may_false: np.ndarray
    may_null: np.ndarray

    @property
    def must_true(self) -> np.ndarray:
        return self.may_true & ~self.may_false & ~self.may_null


def _has_terms(e) -> bool:
    return ast.has_terms(e)


def exact_interval(values: pa.Array) -> Interval:
    """An exact numeric column as a (degenerate) interval."""
    null = values.is_null().to_numpy(zero_copy_only=False).astype(bool)
    if pa.types.is_null(values.type):
        v = np.zeros(len(values))
    else:
        v = values.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
    lo, hi = v.copy(), v.copy()
    if pa.types.is_integer(values.type):
        # Integers beyond 2**53 may have been rounded on the way to float64.
        big = np.abs(v) >= _EXACT_INT_LIMIT
        lo[big] = np.nextafter(lo[big], -np.inf)
        hi[big] = np.nextafter(hi[big], np.inf)
    return Interval(lo, hi, null, null.copy())


def interval(e: ast.Expr, env: Env) -> Interval:
    """Bounds of a numeric expression for every row of ``env.rows``."""
    if not _has_terms(e):
        return exact_interval(evaluate(e, env))
    if isinstance(e, (ast.CP, ast.Aggregate)):
        lo, hi, may_null, must_null = env.term_bounds(e)
        return Interval(lo.astype(np.float64), hi.astype(np.float64), may_null, must_null)
    if isinstance(e, ast.Neg):
        a = interval(e.operand, env)
        return Interval(-a.hi, -a.lo, a.may_null, a.must_null)
    if isinstance(e, ast.BinOp):
        a, b = interval(e.left, env), interval(e.right, env)
        may_null = a.may_null | b.may_null
        must_null = a.must_null | b.must_null
        with np.errstate(all="ignore"):
            if e.op == "+":
                return Interval(a.lo + b.lo, a.hi + b.hi, may_null, must_null)
            if e.op == "-":
                return Interval(a.lo - b.hi, a.hi - b.lo, may_null, must_null)
            if e.op == "*":
                lo, hi = _corners(np.multiply, a, b)
                return Interval(lo, hi, may_null, must_null)
            return _divide(a, b, may_null, must_null)
    raise TypeError(f"no bounds for {type(e).__name__}")


def _corners(op, a: Interval, b: Interval) -> tuple[np.ndarray, np.ndarray]:
    c = np.stack([op(a.lo, b.lo), op(a.lo, b.hi), op(a.hi, b.lo), op(a.hi, b.hi)])
    # 0 * inf or inf / inf is NaN: then the range is unbounded on both sides.
    undefined = np.isnan(c).any(axis=0)
    lo = np.where(undefined, -np.inf, np.where(np.isnan(c), np.inf, c).min(axis=0))
    hi = np.where(undefined, np.inf, np.where(np.isnan(c), -np.inf, c).max(axis=0))
    return lo, hi


def _divide(a: Interval, b: Interval, may_null, must_null) -> Interval:
    b_zero_possible = (b.lo <= 0) & (b.hi >= 0)
    b_only_zero = (b.lo == 0) & (b.hi == 0)
    away = ~b_zero_possible
    lo = np.full(a.lo.shape, -np.inf)
    hi = np.full(a.lo.shape, np.inf)
    if away.any():
        clo, chi = _corners(np.divide, a, b)
        lo[away], hi[away] = clo[away], chi[away]
    # A non-negative numerator over a non-negative divisor (CP / CP, CP / area): when the
    # divisor is not zero it is at least its smallest positive value.
    nonneg = b_zero_possible & ~b_only_zero & (b.lo >= 0) & (a.lo >= 0)
    if nonneg.any():
        lo[nonneg] = a.lo[nonneg] / b.hi[nonneg]
    return Interval(lo, hi, may_null | b_zero_possible, must_null | b_only_zero)


def outcomes(e: ast.Expr, env: Env) -> Outcomes:
    """Possible outcomes of a predicate for every row of ``env.rows``."""
    if not _has_terms(e):
        v = evaluate(e, env)
        null = v.is_null().to_numpy(zero_copy_only=False).astype(bool)
        if pa.types.is_null(v.type):
            t = np.zeros(len(v), bool)
        else:
            t = v.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        return Outcomes(t & ~null, ~t & ~null, null)
    if isinstance(e, ast.Compare):
        return _compare(e.op, interval(e.left, env), interval(e.right, env))
    if isinstance(e, ast.Not):
        o = outcomes(e.operand, env)
        return Outcomes(o.may_false, o.may_true, o.may_null)
    if isinstance(e, ast.And):
        items = [outcomes(x, env) for x in e.items]
        may_true = np.logical_and.reduce([o.may_true for o in items])
        may_false = np.logical_or.reduce([o.may_false for o in items])
        may_null = (np.logical_and.reduce([o.may_true | o.may_null for o in items])
                    & np.logical_or.reduce([o.may_null for o in items]))
        return Outcomes(may_true, may_false, may_null)
    if isinstance(e, ast.Or):
        items = [outcomes(x, env) for x in e.items]
        may_true = np.logical_or.reduce([o.may_true for o in items])
        may_false = np.logical_and.reduce([o.may_false for o in items])
        may_null = (np.logical_and.reduce([o.may_false | o.may_null for o in items])
                    & np.logical_or.reduce([o.may_null for o in items]))
        return Outcomes(may_true, may_false, may_null)
    if isinstance(e, ast.IsNull):
        if isinstance(e.operand, (ast.Compare, ast.And, ast.Or, ast.Not, ast.IsNull)):
            o = outcomes(e.operand, env)
            may_null, must_null = o.may_null, ~o.may_true & ~o.may_false
        else:
            a = interval(e.operand, env)
            may_null, must_null = a.may_null, a.must_null
        is_null = Outcomes(may_null, ~must_null, np.zeros_like(may_null))
        return Outcomes(is_null.may_false, is_null.may_true, is_null.may_null) if e.negated \
            else is_null
    raise TypeError(f"no outcomes for {type(e).__name__}")


def _compare(op: str, a: Interval, b: Interval) -> Outcomes:
    value_possible = ~a.must_null & ~b.must_null
    may_null = a.may_null | b.may_null
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
    return Outcomes(value_possible & may_true, value_possible & may_false, may_null)
