"""The NumPy twins of the query kernels (``masksearch.kernels.twins``) give what the Numba
kernels give, bit for bit, on random inputs: every pixel type, NaN pixels, empty and edge
boxes, cuts on and between the bin edges; and ``kernels.dispatch`` chooses as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from masksearch.index.chi import (
    build_segment_index,
    default_edges,
    kernel_arrays,
    kernel_view,
)
from masksearch.kernels import (
    bound_kernels,
    chi_kernels,
    codec_kernels,
    count_kernels,
    dispatch,
    twins,
)
from masksearch.store.chi_file import encode_counts

from . import test_engine_oracle as engine_oracle
from .strategies import examples

DTYPES = ("float32", "float64", "float16", "uint8", "uint16", "bool")


@st.composite
def masks(draw, min_n: int = 1, max_n: int = 6, one_shape: bool = False):
    """Masks of one dtype: random values, some NaN (float types), a few repeated values
    (so that pixels fall on the bin edges)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(min_n, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shapes = [(draw(st.integers(1, 40)), draw(st.integers(1, 40)))]
    for _ in range(n - 1):
        shapes.append(shapes[0] if one_shape or draw(st.booleans()) else
                      (draw(st.integers(1, 40)), draw(st.integers(1, 40))))
    out = []
    nan_share = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))
    for h, w in shapes:
        if dtype == np.bool_:
            m = rng.random((h, w)) < 0.5
        elif dtype.kind == "u":
            top = draw(st.sampled_from([1, 3, 60, 255, 4000]))
            m = rng.integers(0, min(top, np.iinfo(dtype).max) + 1, (h, w)).astype(dtype)
        else:
            m = np.round(rng.random((h, w)) * draw(st.sampled_from([1, 20, 1000])))
            m = (m / draw(st.sampled_from([1, 20, 1000]))).astype(dtype)
            m[rng.random((h, w)) < nan_share] = np.nan
        out.append(m)
    return dtype, out


def _index(dtype: np.dtype, ms: list[np.ndarray], cell: int):
    values = np.concatenate([kernel_view(m).astype(np.float64).ravel() for m in ms])
    finite = values[~np.isnan(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return build_segment_index(ms, default_edges(dtype, vmin, vmax), cell)


@st.composite
def boxes(draw, h: int, w: int):
    """A clipped box (x0, y0, x1, y1) in an h x w mask: empty, whole, on cell lines or
    anywhere."""
    kind = draw(st.sampled_from(["any", "full", "empty", "line"]))
    if kind == "full":
        return 0, 0, w, h
    if kind == "empty":
        x = draw(st.integers(0, w))
        y = draw(st.integers(0, h))
        return x, y, x, draw(st.integers(y, h))
    x0 = draw(st.integers(0, w))
    x1 = draw(st.integers(x0, w))
    y0 = draw(st.integers(0, h))
    y1 = draw(st.integers(y0, h))
    return x0, y0, x1, y1


@st.composite
def cut_values(draw, edges: np.ndarray):
    """A cut threshold: an edge, a float next to one, anything, or infinite."""
    kind = draw(st.sampled_from(["edge", "next", "any", "inf"]))
    if kind == "edge":
        return float(draw(st.sampled_from(list(edges))))
    if kind == "next":
        e = float(draw(st.sampled_from(list(edges))))
        return math.nextafter(e, draw(st.sampled_from([math.inf, -math.inf])))
    if kind == "inf":
        return draw(st.sampled_from([math.inf, -math.inf]))
    return draw(st.floats(-2.0, 4100.0, allow_nan=False))


@st.composite
def bound_cases(draw, one_shape: bool = False):
    dtype, ms = draw(masks(one_shape=one_shape))
    cell = draw(st.sampled_from([1, 3, 4, 8, 16]))
    index = _index(dtype, ms, cell)
    n = len(ms)
    rows = np.array(draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=8)), np.int64)
    bx = np.array([draw(boxes(int(index.heights[i]), int(index.widths[i]))) for i in rows],
                  np.int64).reshape(-1, 4)
    lo = draw(cut_values(index.edges))
    hi = draw(cut_values(index.edges))
    cut = (lo, draw(st.booleans()), hi, draw(st.booleans()))
    return index, rows, bx, cut


def _decide(draw, n: int):
    pick = st.sampled_from([np.nan, 0.0, 1.0, 5.0, 30.0, 200.0, 1e9])
    return (np.array([draw(pick) for _ in range(n)], np.float64),
            np.array([draw(pick) for _ in range(n)], np.float64))


@settings(max_examples=examples(300), deadline=None)
@given(bound_cases(), st.booleans(), st.data())
def test_chi_bounds_twin_equals_kernel(case, refine, data):
    index, rows, bx, cut = case
    low, high = _decide(data.draw, len(rows))
    got = (np.full(len(rows), -7, np.int64), np.full(len(rows), -7, np.int64))
    want = (np.full(len(rows), -7, np.int64), np.full(len(rows), -7, np.int64))
    chi = kernel_arrays(index)
    twins.chi_bounds(chi, index.cell, rows, bx, cut, refine, (low, high), got)
    bound_kernels.chi_bounds(chi, index.cell, rows, bx, cut, refine, (low, high), want)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=examples(200), deadline=None)
@given(bound_cases(one_shape=True))
def test_chi_cell_bounds_twin_equals_kernel(case):
    index, rows, bx, cut = case
    assume(len(rows) > 0)
    h, w = int(index.heights[rows[0]]), int(index.widths[rows[0]])
    shape = (len(rows), (h + index.cell - 1) // index.cell, (w + index.cell - 1) // index.cell)
    got = tuple(np.full(shape, -7, np.int64) for _ in range(3))
    want = tuple(np.full(shape, -7, np.int64) for _ in range(3))
    chi = kernel_arrays(index)
    twins.chi_cell_bounds(chi, index.cell, rows, bx, cut, got)
    bound_kernels.chi_cell_bounds(chi, index.cell, rows, bx, cut, want)
    for g, wv in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, wv)


@settings(max_examples=examples(200), deadline=None)
@given(masks(), st.sampled_from([1, 3, 8, 16]))
def test_histograms_to_chi_twin_equals_kernel(case, cell):
    """Decoding a stored index: the histograms back to cumulative counts, masks of one
    or several shapes, every counts dtype the index picks."""
    dtype, ms = case
    index = _index(dtype, ms, cell)
    n_cuts = len(index.edges) + 1
    hist = np.empty_like(index.counts)
    chi_kernels.chi_to_histograms(index.counts, index.offsets, index.heights, index.widths,
                                  cell, n_cuts, hist)
    got = np.full_like(index.counts, 7)
    twins.histograms_to_chi(hist, index.offsets, index.heights, index.widths, cell, n_cuts,
                            got)
    want = np.full_like(index.counts, 7)
    chi_kernels.histograms_to_chi(hist, index.offsets, index.heights, index.widths, cell,
                                  n_cuts, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, index.counts)
    assert encode_counts(index)   # the stored form of the same index encodes


@settings(max_examples=examples(200), deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 8]), st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_unshuffle_twin_equals_kernel(itemsize, n, seed):
    """Byte planes back to values for every item size."""
    src = np.random.default_rng(seed).integers(0, 256, n * itemsize, dtype=np.uint8)
    got = np.full(len(src), 9, np.uint8)
    want = np.full(len(src), 9, np.uint8)
    twins.unshuffle_bytes(src, itemsize, got)
    codec_kernels.unshuffle_bytes(src, itemsize, want)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=examples(300), deadline=None)
@given(masks(max_n=1), st.data())
def test_count_in_range_twin_equals_kernel(case, data):
    dtype, (mask,) = case
    view = kernel_view(mask)
    h, w = view.shape
    x0, y0, x1, y1 = data.draw(boxes(h, w))
    edges = default_edges(dtype, 0.0, 1.0)
    lo = data.draw(cut_values(edges))
    hi = data.draw(cut_values(edges))
    li, hincl = data.draw(st.booleans()), data.draw(st.booleans())
    got = twins.count_in_range(view, x0, y0, x1, y1, lo, li, hi, hincl)
    want = count_kernels.count_in_range(view, x0, y0, x1, y1, lo, li, hi, hincl)
    assert got == want
    assert isinstance(got, int)


def test_count_in_range_twin_refuses_a_box_outside_the_mask():
    pixels = np.zeros((4, 5), np.float32)
    for box in [(-1, 0, 2, 2), (0, 0, 6, 2), (0, 0, 2, 5)]:
        with pytest.raises(IndexError, match="outside"):
            count_kernels.count_in_range(pixels, *box, 0.0, False, 1.0, True)
        with pytest.raises(IndexError, match="outside"):
            twins.count_in_range(pixels, *box, 0.0, False, 1.0, True)


def test_dispatch_follows_the_mode_and_the_budget(monkeypatch):
    monkeypatch.delenv(dispatch.ENV, raising=False)
    with dispatch.force("numpy"):
        assert dispatch.use_twin(10**15)
    with dispatch.force("numba"):
        assert not dispatch.use_twin(1)
    # This process has loaded Numba kernels (imported above): auto runs them.
    assert dispatch.numba_loaded()
    with dispatch.force("auto"):
        assert not dispatch.use_twin(1)
    monkeypatch.setenv(dispatch.ENV, "numpy")
    assert dispatch.mode() == "numpy"
    assert dispatch.use_twin(1)
    monkeypatch.setenv(dispatch.ENV, "fast")
    with pytest.raises(ValueError, match="MASKSEARCH_KERNELS='fast'"):
        dispatch.mode()
    with pytest.raises(ValueError, match="unknown kernel mode"), dispatch.force("gpu"):
        pass


def test_dispatch_spends_the_budget_then_loads_numba(monkeypatch):
    """Without Numba loaded, twins run until their estimated time would pass the budget;
    every call after that runs the kernel."""
    monkeypatch.delenv(dispatch.ENV, raising=False)
    monkeypatch.setattr(dispatch, "numba_loaded", lambda: False)
    dispatch.reset_budget()
    try:
        half = dispatch.TWIN_BUDGET_NS // 2
        assert dispatch.use_twin(half)
        assert dispatch.use_twin(half)
        assert dispatch.twin_time_ns() == 2 * half
        assert not dispatch.use_twin(dispatch.TWIN_BUDGET_NS - 2 * half + 1)
        dispatch.reset_budget()
        assert not dispatch.use_twin(dispatch.TWIN_BUDGET_NS + 1)   # too big for twins
        assert dispatch.use_twin(dispatch.TWIN_BUDGET_NS)
    finally:
        dispatch.reset_budget()


@pytest.mark.parametrize("mode", ["numpy", "numba"])
def test_dispatch_functions_give_the_kernels_answers(mode):
    """The dispatching wrappers, each mode, on one case of each kernel."""
    rng = np.random.default_rng(3)
    ms = [rng.random((20, 30)).astype(np.float32) for _ in range(3)]
    index = build_segment_index(ms, default_edges(np.dtype("float32"), 0.0, 1.0), 8)
    chi = kernel_arrays(index)
    rows = np.array([0, 2, 1], np.int64)
    bx = np.array([[1, 2, 29, 17], [0, 0, 30, 20], [5, 5, 6, 6]], np.int64)
    cut = (0.5, False, 1.0, True)
    nan = np.full(3, np.nan)
    with dispatch.force(mode):
        got = (np.empty(3, np.int64), np.empty(3, np.int64))
        dispatch.chi_bounds(chi, 8, rows, bx, cut, True, (nan, nan), got)
        cells = tuple(np.empty((3, 3, 4), np.int64) for _ in range(3))
        dispatch.chi_cell_bounds(chi, 8, rows, bx, cut, cells)
        counts = [dispatch.count_in_range(ms[r], *b, 0.5, False, 1.0, True)
                  for r, b in zip(rows, bx, strict=True)]
        src = rng.integers(0, 256, 64, dtype=np.uint8)
        out = np.empty(64, np.uint8)
        dispatch.unshuffle_bytes(src, 4, out)
    want = (np.empty(3, np.int64), np.empty(3, np.int64))
    bound_kernels.chi_bounds(chi, 8, rows, bx, cut, True, (nan, nan), want)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert (got[0] <= counts).all()
    assert (np.array(counts) <= got[1]).all()
    exact = [int(np.count_nonzero((m[b[1]:b[3], b[0]:b[2]] > 0.5)
                                  & (m[b[1]:b[3], b[0]:b[2]] <= 1.0)))
             for m, b in zip([ms[r] for r in rows], bx, strict=True)]
    assert counts == exact
    want_out = np.empty(64, np.uint8)
    codec_kernels.unshuffle_bytes(src, 4, want_out)
    np.testing.assert_array_equal(out, want_out)
    want_cells = tuple(np.empty((3, 3, 4), np.int64) for _ in range(3))
    bound_kernels.chi_cell_bounds(chi, 8, rows, bx, cut, want_cells)
    for g, wv in zip(cells, want_cells, strict=True):
        np.testing.assert_array_equal(g, wv)


# --- the engine with the twins forced on, against the brute-force oracle ---------------------

@settings(max_examples=examples(60), deadline=None)
@given(engine_oracle.databases(), st.lists(engine_oracle.queries(), min_size=1, max_size=4))
def test_engine_with_twins_equals_oracle(database, specs):
    """Every query path (index on and off, eager and lazy indexes) with each kernel call
    on its NumPy twin."""
    ms_, meta, cell, split = database
    with dispatch.force("numpy"):
        engine_oracle._check(ms_, meta, cell, split, specs)


@settings(max_examples=examples(40), deadline=None)
@given(engine_oracle.databases(), st.lists(engine_oracle.group_queries(), min_size=1,
                                           max_size=3))
def test_grouped_queries_with_twins_equal_oracle(database, specs):
    ms_, meta, cell, split = database
    with dispatch.force("numpy"):
        engine_oracle._check(ms_, meta, cell, split, specs)
