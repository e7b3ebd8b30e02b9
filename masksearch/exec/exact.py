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
from ..store.numpy_arrow import array_numpy, numeric_values_and_nulls, numpy_array, scalar
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
    return column_array(env, e.name)


def column_array(env: Env, name: str) -> pa.Array:
    """A metadata column of ``env`` as one array."""
    col = env.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


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


Numbers: TypeAlias = tuple[np.ndarray, np.ndarray]     # (values, NULL mask)
_INT64_MIN = np.iinfo(np.int64).min
_SAFE_FACTOR = 1 << 31      # |a|, |b| below it: a * b cannot overflow int64
_EXACT_FLOAT_INT = 1 << 53  # integers up to it are exact in float64


def numbers(e: ast.Expr, env: Env) -> Numbers | None:
    """``evaluate(e, env)`` in NumPy for the arithmetic top-k and sorting do most: CP terms,
    areas, numeric columns and literals under + - * / and negation, as (values: int64 or
    float64, 0 where NULL; NULL mask), the values and types ``evaluate`` gives. None for
    anything else, and wherever ``evaluate`` would raise (an int64 overflow): call it."""
    try:
        out = _numbers(e, env)
    except _NotPlain:
        return None
    values, null = out
    n = env.num_rows
    return np.broadcast_to(values, (n,)).copy(), np.broadcast_to(null, (n,)).copy()


class _NotPlain(Exception):
    """An expression ``numbers`` leaves to ``evaluate``."""


def _numbers(e: ast.Expr, env: Env) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(e, ast.Literal):
        v = e.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                isinstance(v, int) and not -(1 << 63) <= v < (1 << 63)):
            raise _NotPlain
        return np.array(v, np.int64 if isinstance(v, int) else np.float64), np.array(False)
    if isinstance(e, (ast.CP, ast.Aggregate, ast.Column)):
        array = env.term_exact(e) if not isinstance(e, ast.Column) else \
            column_array(env, e.name)
        plain = numeric_values_and_nulls(array)
        if plain is None or plain[0].dtype not in (np.int64, np.float64):
            raise _NotPlain
        return plain
    if isinstance(e, ast.Area):
        reg = env.region(e.roi)
        return np.where(reg.null, 0, reg.area).astype(np.int64), reg.null
    if isinstance(e, ast.Neg):
        v, null = _numbers(e.operand, env)
        if v.dtype == np.int64 and (v == _INT64_MIN).any():
            raise _NotPlain
        return -v, null
    if isinstance(e, ast.BinOp):
        (a, a_null), (b, b_null) = _numbers(e.left, env), _numbers(e.right, env)
        null = a_null | b_null
        if e.op == "/":
            q, zero = _quotient(a.astype(np.float64), b.astype(np.float64))
            null = null | zero
            return np.where(null, 0.0, q), null
        return _arith(e.op, a, b), null
    raise _NotPlain


def _beyond(x: np.ndarray, limit: int) -> bool:
    """Whether an int64 value is outside [-limit, limit] (np.abs of the smallest int64 is
    itself: not used)."""
    return bool(((x > limit) | (x < -limit)).any())


def _arith(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a op b`` as Arrow's checked kernels give it: int64 when both are, else float64;
    an int64 overflow is left to them (they raise)."""
    if a.dtype != np.int64 or b.dtype != np.int64:
        # Arrow casts the integer side safely: one that no float holds exactly is an error.
        if any(x.dtype == np.int64 and _beyond(x, _EXACT_FLOAT_INT) for x in (a, b)):
            raise _NotPlain
        a, b = a.astype(np.float64), b.astype(np.float64)
        with np.errstate(all="ignore"):
            out: np.ndarray = {"+": np.add, "-": np.subtract, "*": np.multiply}[op](a, b)
        return out
    if op == "*":
        if _beyond(a, _SAFE_FACTOR - 1) or _beyond(b, _SAFE_FACTOR - 1):
            raise _NotPlain
        product: np.ndarray = a * b
        return product
    with np.errstate(over="ignore"):
        r: np.ndarray = a + b if op == "+" else a - b
    wrapped = ((a ^ r) & (b ^ r)) < 0 if op == "+" else ((a ^ b) & (a ^ r)) < 0
    if wrapped.any():
        raise _NotPlain
    return r


def project(op: Project, env: Env) -> pa.Table:
    """The output columns of ``op`` over every row of ``env``."""
    return pa.Table.from_arrays([_output(e, env) for e in op.outputs], names=list(op.names))


def _output(e: ast.Expr, env: Env) -> pa.Array:
    """``evaluate(e, env)``, through ``numbers`` for arithmetic over CP terms."""
    plain = None if isinstance(e, (ast.Column, ast.Literal)) else numbers(e, env)
    if plain is None:
        return evaluate(e, env)
    values, null = plain
    return numpy_array(values, pa.int64() if values.dtype == np.int64 else pa.float64(),
                       mask=null if null.any() else None)


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
    quotient, zero = _quotient(lf, rf)
    zero = np.broadcast_to(zero, quotient.shape)
    return numpy_array(quotient, pa.float64(), mask=zero if zero.any() else None)


def _quotient(lf: np.ndarray | np.float64, rf: np.ndarray | np.float64
              ) -> tuple[np.ndarray, np.ndarray]:
    """``divide``'s float division in NumPy: the quotients, and where the divisor is zero
    (there the quotient is a placeholder: the value is NULL)."""
    zero = np.asarray(rf == 0.0)
    with np.errstate(all="ignore"):
        return np.asarray(lf / np.where(zero, 1.0, rf), np.float64), zero


def _plain_float(value: Value) -> np.ndarray | np.float64 | None:
    """``value`` as float64 (an array, or a scalar) if it is numeric without NULLs."""
    if not (pa.types.is_integer(value.type) or pa.types.is_floating(value.type)):
        return None
    if isinstance(value, pa.Scalar):
        return np.float64(value.as_py()) if value.is_valid else None
    if value.null_count:
        return None
    return array_numpy(value).astype(np.float64)
