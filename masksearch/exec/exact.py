"""Exact evaluation of expressions over a batch of rows, with SQL NULL semantics (pyarrow)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import QueryError
from ..lang import ast
from .regions import Regions

_COMPARE = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}
# Checked: integer overflow is an error, never a wrapped value.
_ARITH = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}


class Env(Protocol):
    """What expressions are evaluated against: a batch of metadata rows and their CP values."""

    rows: pa.Table

    def region(self, roi: ast.Roi) -> Regions: ...

    def term_exact(self, node: ast.Expr) -> pa.Array:
        """Exact values of a CP term (rows) or an aggregate (groups)."""

    def term_bounds(self, node: ast.Expr) -> tuple[np.ndarray, ...]:
        """(lo, hi, may_null, must_null) of a CP term (rows) or an aggregate (groups)."""


def area_array(env: Env, roi: ast.Roi) -> pa.Array:
    reg = env.region(roi)
    return pa.array(reg.area, pa.int64(), mask=reg.null)


def located(error: QueryError, node) -> QueryError:
    """``error`` at ``node``'s position in the query (the executor adds the query text)."""
    if error.line is None and getattr(node, "pos", None):
        return QueryError(error.message, None, node.pos[0], node.pos[1])
    return error


def evaluate(expr: ast.Expr, env: Env) -> pa.Array:
    """The value of ``expr`` for every row of ``env.rows`` as an Arrow array."""
    try:
        out = _eval(expr, env)
    except pa.ArrowInvalid as e:
        raise located(QueryError(f"cannot evaluate the expression: {e}"), expr) from None
    if isinstance(out, pa.Scalar):
        out = pa.repeat(out, env.rows.num_rows)
    return out


def _eval(e: ast.Expr, env: Env):
    if isinstance(e, ast.Literal):
        return pa.scalar(e.value)
    if isinstance(e, ast.Column):
        return env.rows.column(e.name).combine_chunks()
    if isinstance(e, (ast.CP, ast.Aggregate)):
        return env.term_exact(e)
    if isinstance(e, ast.Area):
        return area_array(env, e.roi)
    if isinstance(e, ast.Neg):
        return pc.negate(_eval(e.operand, env))
    if isinstance(e, ast.BinOp):
        left, right = _eval(e.left, env), _eval(e.right, env)
        if e.op == "/":
            return divide(left, right)
        if pa.types.is_null(left.type) or pa.types.is_null(right.type):
            return pa.scalar(None, pa.float64())
        try:
            return _ARITH[e.op](left, right)
        except pa.ArrowInvalid as err:     # e.g. integer overflow: say which operation
            raise located(QueryError(f"cannot evaluate the expression: {err}"), e) from None
    if isinstance(e, ast.Compare):
        left, right = _eval(e.left, env), _eval(e.right, env)
        if pa.types.is_null(left.type) or pa.types.is_null(right.type):
            return pa.scalar(None, pa.bool_())
        return _COMPARE[e.op](left, right)
    if isinstance(e, ast.And):
        out = _eval(e.items[0], env)
        for x in e.items[1:]:
            out = pc.and_kleene(_as_bool(out), _as_bool(_eval(x, env)))
        return out
    if isinstance(e, ast.Or):
        out = _eval(e.items[0], env)
        for x in e.items[1:]:
            out = pc.or_kleene(_as_bool(out), _as_bool(_eval(x, env)))
        return out
    if isinstance(e, ast.Not):
        return pc.invert(_as_bool(_eval(e.operand, env)))
    if isinstance(e, ast.IsNull):
        value = _eval(e.operand, env)
        return pc.is_valid(value) if e.negated else pc.is_null(value)
    raise TypeError(f"cannot evaluate {type(e).__name__}")


def _as_bool(value):
    return value.cast(pa.bool_()) if pa.types.is_null(value.type) else value


def divide(left, right):
    """Float division where a zero (or NULL) divisor gives NULL."""
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return pa.scalar(None, pa.float64())
    lf = pc.cast(left, pa.float64(), safe=False)
    rf = pc.cast(right, pa.float64(), safe=False)
    zero = pc.equal(rf, 0.0)
    safe = pc.if_else(zero, pa.scalar(1.0), rf)
    return pc.if_else(zero, pa.scalar(None, pa.float64()), pc.divide(lf, safe))
