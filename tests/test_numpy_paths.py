"""The executor's NumPy shortcuts against the Arrow compute calls they stand in for: exact
division (``exec.exact.divide``) and sorting by numeric keys
(``exec.selection.numeric_sort_order``); the k-th best of bounds against a sort."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.errors import QueryError
from masksearch.exec.exact import divide, evaluate, numbers
from masksearch.exec.selection import kth_best, numeric_sort_order
from masksearch.lang import ast
from masksearch.store.numpy_arrow import numeric_values_and_nulls, scalar

from .test_intervals import NUMERIC, Rows, environments

INTS = st.one_of(st.integers(-5, 5), st.integers(-2**62, 2**62),
                 st.sampled_from([0, 2**53 + 1, -(2**63)]))
FLOATS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from(
    [0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]))


def _arrow_divide(left: pa.Array | pa.Scalar, right: pa.Array | pa.Scalar) -> list:
    """The division ``divide`` defines, with Arrow's own functions: a zero or NULL divisor
    gives NULL."""
    lf, rf = pc.cast(left, pa.float64(), safe=False), pc.cast(right, pa.float64(), safe=False)
    zero = pc.equal(rf, 0.0)
    out = pc.if_else(zero, pa.scalar(None, pa.float64()), pc.divide(lf, pc.if_else(zero, 1.0,
                                                                                   rf)))
    return out.to_pylist() if isinstance(out, pa.Array) else [out.as_py()]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and (
            (x == y and math.copysign(1, x) == math.copysign(1, y)) or (x != x and y != y)))
        for x, y in zip(a, b, strict=True))


@st.composite
def operands(draw: st.DrawFn) -> tuple[pa.Array | pa.Scalar, pa.Array | pa.Scalar]:
    n = draw(st.integers(1, 8))
    sides = []
    for _ in range(2):
        kind = draw(st.sampled_from(["int", "float", "int32", "float32", "scalar_int",
                                     "scalar_float", "null_in"]))
        if kind.startswith("scalar"):
            value = draw(INTS if kind == "scalar_int" else FLOATS)
            sides.append(scalar(value))
            continue
        values = draw(st.lists(FLOATS if "float" in kind else INTS, min_size=n, max_size=n))
        if kind == "int32":
            sides.append(pa.array([int(np.clip(v, -2**31, 2**31 - 1)) for v in values],
                                  pa.int32()))
        elif kind == "float32":
            with np.errstate(over="ignore"):      # 1e308 becomes inf
                sides.append(pa.array(np.array(values, np.float64).astype(np.float32)))
        elif kind == "null_in":
            sides.append(pa.array([None, *values[1:]], pa.int64()))
        else:
            sides.append(pa.array(values, pa.float64() if kind == "float" else pa.int64()))
    return sides[0], sides[1]


@settings(max_examples=500)
@given(operands())
def test_divide_matches_arrow(pair: tuple[pa.Array | pa.Scalar, pa.Array | pa.Scalar]) -> None:
    left, right = pair
    got = divide(left, right)
    got_list = got.to_pylist() if isinstance(got, pa.Array) else [got.as_py()]
    want = _arrow_divide(left, right)
    if isinstance(got, pa.Array):
        assert got.type == pa.float64()
    assert _same(got_list, want), (left, right, got_list, want)


@st.composite
def sort_tables(draw: st.DrawFn) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    n = draw(st.integers(0, 12))
    columns, spec = {}, []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["float", "int", "bool", "null_in", "uint"]))
        name = f"k{i}"
        if kind == "float":
            columns[name] = pa.array(draw(st.lists(st.sampled_from(
                [0.0, -0.0, 1.5, -2.0, math.nan, math.inf, -math.inf]), min_size=n,
                max_size=n)), pa.float64())
        elif kind == "int":
            columns[name] = pa.array(draw(st.lists(st.sampled_from(
                [0, 1, -1, 7, 2**62, -(2**63)]), min_size=n, max_size=n)), pa.int64())
        elif kind == "uint":
            columns[name] = pa.array(draw(st.lists(st.integers(0, 3), min_size=n,
                                                   max_size=n)), pa.uint8())
        elif kind == "bool":
            columns[name] = pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        else:
            columns[name] = pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-2, 2)),
                                                   min_size=n, max_size=n)), pa.int64())
        spec.append((name, draw(st.sampled_from(["ascending", "descending"])), "at_end"))
    columns["t_mask_id"] = pa.array(draw(st.permutations(range(n))), pa.int64())
    spec.append(("t_mask_id", "ascending", "at_end"))
    return pa.table(columns), spec


@settings(max_examples=500)
@given(sort_tables())
def test_numeric_sort_order_matches_arrow(case: tuple[pa.Table, list]) -> None:
    table, spec = case
    got = numeric_sort_order(table, spec)
    want = pc.sort_indices(table, sort_keys=spec).to_numpy()
    kinds = [table.column(name).type for name, _, _ in spec]
    plain = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds) and \
        not any(table.column(name).null_count for name, _, _ in spec)
    if got is None:      # declined: only where Arrow's own sort is needed
        assert not plain or any(pa.types.is_unsigned_integer(t) for t in kinds) or any(
            pa.types.is_signed_integer(t) and len(table) and
            pc.min(table.column(name)).as_py() == -(2**63)
            for (name, _, _), t in zip(spec, kinds, strict=True))
        return
    assert plain
    assert got.tolist() == want.tolist()


@st.composite
def positive_divisions(draw: st.DrawFn) -> tuple:
    """Interval pairs a / b with a >= 0 and a finite b > 0 (``_divide``'s shortcut), with
    NaN flags, infinite numerators and huge values among them."""
    n = draw(st.integers(1, 6))
    ends = st.one_of(st.floats(0, 1e6), st.sampled_from([0.0, 1e308, 2.0**53 + 1, 5e-324]))
    a = sorted_pairs(draw, n, st.one_of(ends, st.just(math.inf)))
    b = sorted_pairs(draw, n, st.one_of(st.floats(1e-300, 1e6), st.sampled_from([5e-324,
                                                                                 1e308])))
    flags = [np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))) for _ in range(4)]
    return a, b, flags


def sorted_pairs(draw: st.DrawFn, n: int, values: st.SearchStrategy) -> tuple:
    pairs = [sorted(draw(st.tuples(values, values))) for _ in range(n)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@settings(max_examples=500)
@given(positive_divisions())
def test_positive_division_shortcut_matches_corners(case: tuple) -> None:
    from masksearch.exec.intervals import Interval, _divide, _divide_any

    (alo, ahi), (blo, bhi), (a_nan, b_nan, may_null, must_null) = case
    a, b = Interval(alo, ahi, may_null, must_null, a_nan), Interval(blo, bhi, may_null,
                                                                   must_null, b_nan)
    fast = _divide(a, b, may_null, must_null)
    full = _divide_any(a, b, may_null, must_null)
    for field in ("lo", "hi", "may_null", "must_null"):
        assert np.array_equal(getattr(fast, field), getattr(full, field)), field
    assert np.array_equal(fast.nan(), full.nan())


@settings(max_examples=1500)
@given(environments(), NUMERIC)
def test_numbers_match_evaluate(env: Rows, expr: ast.Expr) -> None:
    """``exact.numbers`` gives ``evaluate``'s values, types and NULLs wherever it answers,
    and leaves to ``evaluate`` every expression that raises there (int64 overflow)."""
    got = numbers(expr, env)
    try:
        want = evaluate(expr, env)
    except QueryError:
        assert got is None, "evaluate raises: numbers must leave it to evaluate"
        return
    if got is None:
        return
    values, null = got
    plain = numeric_values_and_nulls(want.combine_chunks() if isinstance(
        want, pa.ChunkedArray) else want)
    assert plain is not None, want.type
    want_values, want_null = plain
    assert values.dtype == want_values.dtype, (expr, values.dtype, want.type)
    assert null.tolist() == want_null.tolist(), expr
    ok = ~null
    assert _same(values[ok].tolist(), want_values[ok].tolist()), (expr, values, want)


@given(environments(), st.sampled_from([-(2**63), 2**63 - 1, -(2**53) - 1, 2**31, -(2**31)]),
       st.sampled_from("+-*"), st.sampled_from([2, -1, 0.5, 2**33]))
def test_numbers_leave_extreme_integers_to_evaluate(env: Rows, big: int, op: str,
                                                    other: int | float) -> None:
    expr = ast.BinOp(op, ast.Literal(big, str(big)), ast.Literal(other, str(other)))
    test_numbers_match_evaluate.hypothesis.inner_test(env, expr)  # type: ignore[attr-defined]
    test_numbers_match_evaluate.hypothesis.inner_test(env, ast.Neg(expr))  # type: ignore[attr-defined]


@settings(max_examples=200)
@given(st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.5, -3.0, math.nan, math.inf]) |
                st.floats(-10, 10), max_size=60), st.integers(0, 70), st.booleans())
def test_kth_best_is_the_kth_of_the_sorted_values(values, k, desc):
    """Many equal values (all-zero bounds) included: the k-th best ignoring NaN, None when
    fewer than k values."""
    plain = sorted((v for v in values if not math.isnan(v)), reverse=desc)
    got = kth_best(np.array(values, np.float64), k, desc)
    assert got == (plain[k - 1] if 1 <= k <= len(plain) else None)


@settings(max_examples=150)
@given(st.integers(0, 2**32 - 1), st.integers(1000, 5000), st.integers(1, 300), st.booleans(),
       st.sampled_from(["random", "few values", "sorted", "reversed", "with NaN"]))
def test_kth_best_of_many_values_is_the_kth_of_the_sorted_values(seed, n, k, desc, shape):
    """Enough values for the prefilter (PREFILTER_VALUES), in orders that could fool it."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    if shape == "few values":
        values = rng.integers(0, 4, n).astype(np.float64)
    elif shape == "sorted":
        values.sort()
    elif shape == "reversed":
        values = np.sort(values)[::-1].copy()
    elif shape == "with NaN":
        values[rng.random(n) < 0.3] = np.nan
    plain = np.sort(values[~np.isnan(values)])
    plain = plain[::-1] if desc else plain
    got = kth_best(values, k, desc)
    assert got == (float(plain[k - 1]) if k <= len(plain) else None)
