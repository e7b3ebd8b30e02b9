"""Exact evaluation of expressions over a batch of rows, with SQL NULL semantics (pyarrow)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import numpy as np
import pyarrow as pa

from ..errors import QueryError
from ..lang import ast
from ..plan.operators import Project
from ..store import arrow_compute as pc
from ..store.numpy_arrow import array_numpy, numpy_array, scalar
from .arrays import Array
from .regions import Regions

_COMPARE = {op: pc.function(name) for op, name in (
    ("=", "equal"), ("!=", "not_equal"), ("<", "less"), ("<=", "less_equal"), (">", "greater"),
    (">=", "greater_equal"))}
# Checked: integer overflow is an error, never a wrapped value.
_ARITH = {"+": pc.function("add_checked"), "-": pc.function("subtract_checked"),
          "*": pc.function("multiply_checked")}


class Env(Protocol):
    """What expressions are evaluated against: a batch of metadata rows and their CP values."""

    @property
    def rows(self) -> pa.Table: ...

    @property
    def num_rows(self) -> int: ...

    def column(self, name: str) -> pa.Array | pa.ChunkedArray:
        """A metadata column of the rows (taken alone where that is cheaper)."""

    def region(self, roi: ast.Roi) -> Regions: ...

    def term_exact(self, node: ast.Expr) -> pa.Array:
        """Exact values of a CP term (rows) or an aggregate (groups)."""

    def term_bounds(self, node: ast.Expr) -> tuple[Array, ...]:
        """(lo, hi, may_null, must_null) of a CP term (rows) or an aggregate (groups)."""


def area_array(env: Env, roi: ast.Roi) -> pa.Array:
    reg = env.region(roi)
    return numpy_array(reg.area, pa.int64(), mask=reg.null)


def located(error: QueryError, node: object) -> QueryError:
    """``error`` at ``node``'s position in the query (the executor adds the query text)."""
    pos = getattr(node, "pos", None)
    if error.line is None and pos:
        return QueryError(error.message, None, pos[0], pos[1])
    return error


def evaluate(expr: ast.Expr, env: Env) -> pa.Array:
    """The value of ``expr`` for every row of ``env.rows`` as an Arrow array."""
    try:
        out = _eval(expr, env)
    except pa.ArrowInvalid as e:
        raise located(QueryError(f"cannot evaluate the expression: {e}"), expr) from None
    if isinstance(out, pa.Scalar):
        out = pa.repeat(out, env.num_rows)
    return out


# An Arrow array, or a scalar standing for a column of copies (pyarrow has no type stubs:
# to the type checker its values are all Any).
Value: TypeAlias = Any


def _eval(e: ast.Expr, env: Env) -> Value:
    try:
        rule = _RULES[type(e)]
    except KeyError:
        raise TypeError(f"cannot evaluate {type(e).__name__}") from None
    return rule(e, env)


def _literal(e: ast.Literal, env: Env) -> Value:
    return scalar(e.value)


def _column(e: ast.Column, env: Env) -> Value:
    return env.column(e.name).combine_chunks()


def _term(e: ast.Expr, env: Env) -> Value:
    return env.term_exact(e)


def _area(e: ast.Area, env: Env) -> Value:
    return area_array(env, e.roi)


def _neg(e: ast.Neg, env: Env) -> Value:
    return pc.call("negate", _eval(e.operand, env))


def _binop(e: ast.BinOp, env: Env) -> Value:
    left, right = _eval(e.left, env), _eval(e.right, env)
    if e.op == "/":
        return divide(left, right)
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return scalar(None, pa.float64())
    try:
        return _ARITH[e.op](left, right)
    except pa.ArrowInvalid as err:     # e.g. integer overflow: say which operation
        raise located(QueryError(f"cannot evaluate the expression: {err}"), e) from None


def _compare(e: ast.Compare, env: Env) -> Value:
    left, right = _eval(e.left, env), _eval(e.right, env)
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return scalar(None, pa.bool_())
    return _COMPARE[e.op](left, right)


def _logic(e: ast.And | ast.Or, env: Env) -> Value:
    combine = pc.function("and_kleene" if isinstance(e, ast.And) else "or_kleene")
    out = _eval(e.items[0], env)
    for x in e.items[1:]:
        out = combine(_as_bool(out), _as_bool(_eval(x, env)))
    return out


def _not(e: ast.Not, env: Env) -> Value:
    return pc.call("invert", _as_bool(_eval(e.operand, env)))


def _is_null(e: ast.IsNull, env: Env) -> Value:
    value = _eval(e.operand, env)
    return pc.call("is_valid" if e.negated else "is_null", value)


_RULES: dict[type, Callable[[Any, Env], Value]] = {
    ast.Literal: _literal, ast.Column: _column, ast.CP: _term, ast.Aggregate: _term,
    ast.Area: _area, ast.Neg: _neg, ast.BinOp: _binop, ast.Compare: _compare,
    ast.And: _logic, ast.Or: _logic, ast.Not: _not, ast.IsNull: _is_null,
}


def project(op: Project, env: Env) -> pa.Table:
    """The output columns of ``op`` over every row of ``env``."""
    return pa.Table.from_arrays([evaluate(e, env) for e in op.outputs], names=list(op.names))


def _as_bool(value: Value) -> Value:
    return value.cast(pa.bool_()) if pa.types.is_null(value.type) else value


def divide(left: Value, right: Value) -> Value:
    """Float division where a zero (or NULL) divisor gives NULL."""
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return scalar(None, pa.float64())
    quotient = _divide_plain(left, right)
    if quotient is not None:
        return quotient
    lf = pc.cast_unsafe(left, pa.float64())
    rf = pc.cast_unsafe(right, pa.float64())
    zero = pc.call("equal", rf, scalar(0.0))
    safe = pc.call("if_else", zero, scalar(1.0), rf)
    return pc.call("if_else", zero, scalar(None, pa.float64()), pc.call("divide", lf, safe))


def _divide_plain(left: Value, right: Value) -> pa.Array | None:
    """``divide`` in NumPy when both sides are numeric arrays (or a numeric scalar and an
    array) without NULLs, the common case (CP / area): the same IEEE division, without six
    Arrow calls; None otherwise."""
    lf, rf = _plain_float(left), _plain_float(right)
    if lf is None or rf is None or (np.ndim(lf) == 0 and np.ndim(rf) == 0):
        return None
    zero = rf == 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        quotient = np.asarray(lf / np.where(zero, 1.0, rf), np.float64)
    zero = np.broadcast_to(zero, quotient.shape)
    return numpy_array(quotient, pa.float64(), mask=zero if zero.any() else None)


def _plain_float(value: Value) -> np.ndarray | np.float64 | None:
    """``value`` as float64 (an array, or a scalar) if it is numeric without NULLs."""
    if not (pa.types.is_integer(value.type) or pa.types.is_floating(value.type)):
        return None
    if isinstance(value, pa.Scalar):
        return np.float64(value.as_py()) if value.is_valid else None
    if value.null_count:
        return None
    return array_numpy(value).astype(np.float64)
