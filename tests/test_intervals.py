"""Interval bounds of expressions contain their exact values.

Random expressions over CP terms (each with an exact value inside random bounds), integer
and float columns with NULLs, literals, arithmetic, comparisons and logic: for every row,
``interval`` must contain what exact evaluation gives (NULL and NaN flagged as possible
where they occur) and ``outcomes`` must allow the exact truth value."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from masksearch.errors import QueryError
from masksearch.exec.exact import evaluate
from masksearch.exec.intervals import interval, outcomes
from masksearch.exec.regions import Regions, regions
from masksearch.lang import ast

from .strategies import examples

N_TERMS = 3
CP_NODES = [ast.CP(ast.MaskRef(), ast.BoxRoi(0, 0, t + 1, t + 1),
                   ast.Range("0", True, str(t + 1), True)) for t in range(N_TERMS)]


class Rows:
    """Rows with exact CP values inside bounds: an environment for both evaluations."""

    def __init__(self, table: pa.Table, exact: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 null: np.ndarray):
        self.rows = table
        self.num_rows = table.num_rows
        self.exact, self.lo, self.hi, self.null = exact, lo, hi, null

    def column(self, name: str) -> pa.ChunkedArray:
        return self.rows.column(name)

    def region(self, roi: ast.Roi) -> Regions:
        return regions(roi, self.rows)

    def term_bounds(self, node: ast.Expr) -> tuple[np.ndarray, ...]:
        t = CP_NODES.index(node)
        return self.lo[:, t], self.hi[:, t], self.null[:, t], self.null[:, t]

    def term_exact(self, node: ast.Expr) -> pa.Array:
        t = CP_NODES.index(node)
        return pa.array(self.exact[:, t], pa.int64(), mask=self.null[:, t])


INTS = st.one_of(st.integers(-5, 5), st.integers(-2**62, 2**62),
                 st.sampled_from([0, 1, 2**53, 2**53 + 1, -(2**53) - 3]))
FLOATS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, 0.5, 1e308, -1e308,
                                                           math.inf, -math.inf, math.nan]))


@st.composite
def environments(draw) -> Rows:
    n = draw(st.integers(1, 8))
    exact = np.array([[draw(st.integers(0, 400)) for _ in range(N_TERMS)] for _ in range(n)],
                     np.int64).reshape(n, N_TERMS)
    below = np.array([[draw(st.integers(0, 50)) for _ in range(N_TERMS)] for _ in range(n)],
                     np.int64).reshape(n, N_TERMS)
    above = np.array([[draw(st.integers(0, 50)) for _ in range(N_TERMS)] for _ in range(n)],
                     np.int64).reshape(n, N_TERMS)
    null = np.array([[draw(st.booleans()) and draw(st.booleans()) for _ in range(N_TERMS)]
                     for _ in range(n)], bool).reshape(n, N_TERMS)
    exact[null] = 0
    lo = np.where(null, 0, np.maximum(exact - below, 0))
    hi = np.where(null, 0, exact + above)
    table = pa.table({
        "i": pa.array([draw(st.one_of(st.none(), INTS)) for _ in range(n)], pa.int64()),
        "f": pa.array([draw(st.one_of(st.none(), FLOATS)) for _ in range(n)], pa.float64()),
        "height": pa.array([draw(st.integers(1, 9)) for _ in range(n)], pa.int64()),
        "width": pa.array([draw(st.integers(1, 9)) for _ in range(n)], pa.int64()),
    })
    return Rows(table, exact, lo, hi, null)


LEAVES = st.one_of(
    st.sampled_from(CP_NODES), st.sampled_from(CP_NODES),
    st.sampled_from([ast.Column("i"), ast.Column("f"), ast.Area(ast.FullRoi()),
                     ast.Literal(None, "NULL")]),
    INTS.map(lambda v: ast.Literal(v, str(v))),
    st.floats(-1e3, 1e3).map(lambda v: ast.Literal(v, repr(v))))


def _numeric(inner):
    return st.one_of(
        st.tuples(st.sampled_from("+-*/"), inner, inner).map(lambda t: ast.BinOp(*t)),
        inner.map(ast.Neg))


NUMERIC = st.recursive(LEAVES, _numeric, max_leaves=6)


def _logic(inner):
    return st.one_of(
        st.tuples(inner, inner).map(lambda t: ast.And(t)),
        st.tuples(inner, inner).map(lambda t: ast.Or(t)),
        inner.map(ast.Not),
        st.tuples(inner, st.booleans()).map(lambda t: ast.IsNull(*t)),
        st.tuples(st.sampled_from(["=", "!="]), inner, inner).map(lambda t: ast.Compare(*t)))


COMPARISONS = st.one_of(
    st.tuples(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), NUMERIC, NUMERIC).map(
        lambda t: ast.Compare(*t)),
    st.tuples(NUMERIC, st.booleans()).map(lambda t: ast.IsNull(*t)))
PREDICATES = st.recursive(COMPARISONS, _logic, max_leaves=4)


def _exact(expr: ast.Expr, env: Rows) -> list:
    try:
        return evaluate(expr, env).to_pylist()
    except QueryError:          # integer overflow is an error, never a value: no bounds owed
        assume(False)
        raise


@settings(max_examples=examples(600))
@given(environments(), NUMERIC)
def test_interval_contains_the_exact_value(env, expr):
    values = _exact(expr, env)
    iv = interval(expr, env)
    for r, v in enumerate(values):
        where = f"row {r}: {expr} = {v}, bounds [{iv.lo[r]}, {iv.hi[r]}]"
        if v is None:
            assert iv.may_null[r], where
            continue
        assert not iv.must_null[r], where
        if isinstance(v, float) and math.isnan(v):
            assert iv.nan()[r], where
            continue
        assert iv.lo[r] <= v <= iv.hi[r], where


@settings(max_examples=examples(600))
@given(environments(), PREDICATES)
def test_outcomes_allow_the_exact_truth(env, expr):
    values = _exact(expr, env)
    o = outcomes(expr, env)
    for r, v in enumerate(values):
        where = f"row {r}: {expr} is {v}"
        if v is None:
            assert o.may_null[r], where
        elif v:
            assert o.may_true[r], where
        else:
            assert o.may_false[r], where
        if o.must_true[r]:
            assert v is True, where


def test_tight_bounds_give_the_exact_value():
    """Where every term's bounds are tight, the interval is the exact value itself."""
    table = pa.table({"i": [3, None], "f": [0.5, 2.0], "height": [4, 4], "width": [4, 4]})
    exact = np.array([[10, 20, 30], [1, 2, 3]], np.int64)
    env = Rows(table, exact, exact.copy(), exact.copy(), np.zeros((2, 3), bool))
    expr = ast.BinOp("/", ast.BinOp("+", CP_NODES[0], CP_NODES[1]), ast.Column("f"))
    iv = interval(expr, env)
    assert iv.lo.tolist() == iv.hi.tolist() == [60.0, 1.5]
    o = outcomes(ast.Compare(">", CP_NODES[2], ast.Literal(5, "5")), env)
    assert o.must_true.tolist() == [True, False]
    assert o.may_false.tolist() == [False, True]


@pytest.mark.parametrize(("op", "a", "b", "possible"), [
    ("/", (0, 10), (0, 0), (True, True)),     # a zero divisor: NULL is certain
    ("/", (0, 10), (0, 5), (True, False)),    # possibly zero: NULL is possible
    ("-", (0, 10), (2, 3), (False, False)),
])
def test_division_by_zero_is_null(op, a, b, possible):
    table = pa.table({"height": [4], "width": [4]})
    lo = np.array([[a[0], b[0], 0]], np.int64)
    hi = np.array([[a[1], b[1], 0]], np.int64)
    env = Rows(table, lo.copy(), lo, hi, np.zeros((1, 3), bool))
    iv = interval(ast.BinOp(op, CP_NODES[0], CP_NODES[1]), env)
    assert (bool(iv.may_null[0]), bool(iv.must_null[0])) == possible
