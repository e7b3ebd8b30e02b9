"""The CHI's bounds are sound for any mask, box and range, and exact when aligned."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.exec.regions import clip_boxes
from masksearch.index.chi import (
    Cut,
    build_segment_index,
    count_dtype,
    cut_for_dtype,
    default_edges,
    kernel_view,
    segment_bounds,
    snap_to_edges,
)
from masksearch.kernels.count_kernels import count_in_range

from .reference_bounds import reference_bounds
from .strategies import boxes, brute_cp, examples, masks, value_ranges


def cuts(rng):
    lo, lo_closed, hi, hi_closed = rng
    return Cut(lo, not lo_closed), Cut(hi, hi_closed)


def edges_for(m: np.ndarray) -> np.ndarray:
    v = kernel_view(m).astype(np.float64)
    return default_edges(m.dtype, float(np.nanmin(v)), float(np.nanmax(v)))


def bounds_of(index, m, box, rng, refine=True):
    lo, hi = cuts(rng)
    clipped = clip_boxes(np.array([box]), np.array([m.shape[0]]), np.array([m.shape[1]]))
    lower, upper = segment_bounds(index, m.dtype, np.array([0]), clipped, lo, hi, refine)
    return int(lower[0]), int(upper[0])


@st.composite
def case(draw):
    m = draw(masks())
    return m, draw(boxes(*m.shape)), draw(value_ranges(m)), draw(st.sampled_from([1, 2, 3, 4, 16]))


@settings(max_examples=examples(400))
@given(case())
def test_bounds_contain_exact(c):
    m, box, rng, cell = c
    index = build_segment_index([m], edges_for(m), cell)
    exact = brute_cp(m, box, rng)
    coarse = bounds_of(index, m, box, rng, refine=False)
    fine = bounds_of(index, m, box, rng, refine=True)
    assert 0 <= coarse[0] <= exact <= coarse[1]
    # Refinement only narrows, and stays sound.
    assert coarse[0] <= fine[0] <= exact <= fine[1] <= coarse[1]


@settings(max_examples=examples(200))
@given(case(), st.data())
def test_aligned_box_and_bin_range_is_exact(c, data):
    m, _, _, cell = c
    h, w = m.shape
    edges = edges_for(m)
    index = build_segment_index([m], edges, cell)
    gy = sorted({min(k * cell, h) for k in range(h // cell + 2)})
    gx = sorted({min(k * cell, w) for k in range(w // cell + 2)})
    y0, y1 = sorted(data.draw(st.lists(st.sampled_from(gy), min_size=2, max_size=2)))
    x0, x1 = sorted(data.draw(st.lists(st.sampled_from(gx), min_size=2, max_size=2)))
    ends = [-math.inf] + [float(e) for e in edges] + [math.inf]
    i, j = sorted(data.draw(st.lists(st.integers(0, len(ends) - 1), min_size=2, max_size=2,
                                     unique=True)))
    lo, hi = ends[i], ends[j]
    # [e_i, e_j) with the infinite ends taken as open/closed so that the cut is stored exactly.
    rng = (lo, not math.isinf(lo), hi, math.isinf(hi))
    lower, upper = bounds_of(index, m, (x0, y0, x1, y1), rng)
    assert lower == upper == brute_cp(m, (x0, y0, x1, y1), rng)


@settings(max_examples=examples(300))
@given(case())
def test_count_kernel_matches_numpy(c):
    m, box, rng, _ = c
    lo, hi = cuts(rng)
    lo, hi = cut_for_dtype(lo, m.dtype), cut_for_dtype(hi, m.dtype)
    (x0, y0, x1, y1), = clip_boxes(np.array([box]), np.array([m.shape[0]]),
                                   np.array([m.shape[1]]))
    got = count_in_range(kernel_view(m), x0, y0, x1, y1, lo.t, lo.incl, hi.t, hi.incl)
    assert got == brute_cp(m, box, rng)


@settings(max_examples=examples(100))
@given(st.lists(masks(dtype="float32", max_side=20), min_size=1, max_size=6), st.data())
def test_segment_of_mixed_shapes(ms_, data):
    """Offsets into one flat count array stay right when shapes differ within a segment."""
    edges = np.linspace(-100, 100, 9)
    index = build_segment_index(ms_, edges, 3)
    rows = np.arange(len(ms_))
    box_list = [data.draw(boxes(*m.shape)) for m in ms_]
    rng = data.draw(value_ranges())
    lo, hi = cuts(rng)
    clipped = clip_boxes(np.array(box_list), np.array([m.shape[0] for m in ms_]),
                         np.array([m.shape[1] for m in ms_]))
    lower, upper = segment_bounds(index, np.dtype("float32"), rows, clipped, lo, hi)
    for k, m in enumerate(ms_):
        assert lower[k] <= brute_cp(m, box_list[k], rng) <= upper[k]


def test_count_dtype_is_smallest_that_fits():
    assert count_dtype(255) == np.uint8
    assert count_dtype(224 * 224) == np.uint16
    assert count_dtype(448 * 448) == np.uint32


def test_default_edges_per_dtype():
    assert list(default_edges(np.dtype("bool"), 0, 1)) == [1.0]
    # Few integer values: one bin per value.
    assert list(default_edges(np.dtype("uint8"), 0, 5)) == [1, 2, 3, 4, 5]
    assert len(default_edges(np.dtype("uint16"), 0, 60000)) <= 18
    unit = default_edges(np.dtype("float32"), 0.0, 1.0)
    assert 0.6 in unit
    assert 0.8 in unit
    assert 0.0 in unit
    assert 1.0 in unit


@pytest.mark.parametrize(("dtype", "lo", "hi"), [("uint8", 0, 255), ("uint8", 3, 200),
                                                ("uint16", 0, 65535), ("uint16", 0, 64),
                                                ("uint8", 0, 63)])
def test_default_edges_of_integers_decide_the_ends(dtype, lo, hi):
    """Integer spans get edges at lo + 1 and hi, so = lo, > lo, = hi and < hi are exact
    from the index (one bin per value below 64 values, as before: those include them)."""
    edges = default_edges(np.dtype(dtype), lo, hi)
    assert lo + 1 in edges
    assert hi in edges
    assert (np.diff(edges) > 0).all()
    assert edges[0] > lo
    assert edges[-1] <= hi
    if hi - lo >= 64:       # the 16 equal bins of before, and the two edges
        equal = np.unique(np.round(np.linspace(lo, hi + 1, 17)))[1:-1]
        assert set(edges) == {*equal, lo + 1, hi}


def test_0_255_masks_are_exact_for_their_foreground():
    m = np.zeros((40, 40), np.uint8)
    m[3:29, 5:17] = 255
    index = build_segment_index([m], edges_for(m), 16)
    for rng in [(0, False, 255, True), (1, True, 255, True), (0, True, 0, True),
                (255, True, 255, True), (0, True, 255, False)]:
        exact = brute_cp(m, (0, 0, 40, 40), rng)
        assert bounds_of(index, m, (0, 0, 40, 40), rng, refine=False) == (exact, exact), rng


def test_single_edge_with_infinite_pixels():
    """A single bin edge and inf pixels once sent the build kernel out of bounds."""
    m = np.array([[np.inf, 1.0], [-np.inf, np.nan]], np.float32)
    index = build_segment_index([m], np.array([1.0]), 1)
    lower, upper = bounds_of(index, m, (0, 0, 2, 2), (-np.inf, False, np.inf, True))
    assert lower <= 2 <= upper
    assert bounds_of(index, m, (0, 0, 2, 2), (-np.inf, True, np.inf, True)) == (3, 3)


def test_kernels_are_bounds_checked_in_tests():
    """conftest turns on Numba bounds checks, so a bad index fails a test, not memory."""
    import pytest

    from masksearch.kernels.codec_kernels import unshuffle_bytes

    with pytest.raises(IndexError):     # an output buffer too small for the input
        unshuffle_bytes(np.zeros(16, np.uint8), 4, np.zeros(8, np.uint8))


def test_decimal_range_ends_hit_the_edges():
    """(0.6, 0.8] on edges at multiples of 0.05 is exact for an aligned box, although
    neither 0.6 nor 0.8 is a float (the binder makes them `v <= float below`)."""
    from masksearch.ranges import exact_cut

    rng = np.random.default_rng(3)
    m = rng.random((32, 32)).astype(np.float32)
    index = build_segment_index([m], np.arange(21) / 20, 16)
    box = np.array([[0, 0, 32, 32]])
    for lo, lo_closed, hi, hi_closed in [("0.4", False, "0.8", True), ("0.6", True, "0.7", False),
                                         ("0.1", False, "0.3", True)]:
        lo_cut, hi_cut = exact_cut(lo, not lo_closed), exact_cut(hi, hi_closed)
        lower, upper = segment_bounds(index, m.dtype, np.array([0]), box, lo_cut, hi_cut)
        exact = brute_cp(m, (0, 0, 32, 32), (float(lo), lo_closed, float(hi), hi_closed))
        assert lower[0] == upper[0] == exact


@settings(max_examples=examples(300))
@given(st.lists(case(), min_size=1, max_size=4), st.data())
def test_bounds_equal_the_pixel_reference(cases, data):
    """The kernel's bounds are exactly those of the slow reference, which takes every
    rectangle's counts from the pixels: masks of one dtype in one segment, each with a box,
    some consecutive rows sharing shape and box (the kernel reuses their geometry)."""
    dtype = cases[0][0].dtype
    ms_ = [m for m, *_ in cases if m.dtype == dtype]
    cell = cases[0][3]
    rng = cases[0][2]
    repeat = data.draw(st.integers(1, 6))   # up to 24 rows: several prefetch blocks
    masks_ = [m for m in ms_ for _ in range(repeat)]
    box_list = [b for (m, b, *_) in cases if m.dtype == dtype for _ in range(repeat)]
    edges = edges_for(np.concatenate([m.ravel() for m in ms_]).reshape(1, -1))
    index = build_segment_index(masks_, edges, cell)
    clipped = clip_boxes(np.array(box_list), np.array([m.shape[0] for m in masks_]),
                         np.array([m.shape[1] for m in masks_]))
    if data.draw(st.booleans()):   # ends on the bin edges, where the equal-pixel counts count
        ends = sorted(data.draw(st.lists(st.sampled_from([float(e) for e in edges]),
                                         min_size=2, max_size=2)))
        rng = (ends[0], data.draw(st.booleans()), ends[1], True)
    lo, hi = cuts(rng)
    rows = np.arange(len(masks_))
    for refine in (False, True):
        lower, upper = segment_bounds(index, dtype, rows, clipped, lo, hi, refine)
        klo = snap_to_edges(cut_for_dtype(lo, dtype), edges)
        khi = snap_to_edges(cut_for_dtype(hi, dtype), edges)
        for j, m in enumerate(masks_):
            want = reference_bounds(kernel_view(m), edges, cell, tuple(clipped[j]), klo, khi,
                                    refine)
            assert (lower[j], upper[j]) == want, (j, refine)


@settings(max_examples=examples(100))
@given(st.sampled_from(["bool", "uint8", "uint16", "float16", "float32"]).flatmap(
    lambda dtype: st.lists(masks(dtype=dtype, max_side=30), min_size=1, max_size=5)),
       st.booleans())
def test_segment_edges_match_numpy_value_ranges(ms_, all_nan_first):
    """The bin edges of a new segment come from each mask's non-NaN range, computed by a
    kernel on all cores: the same ranges, and edges, as ``np.nanmin`` / ``np.nanmax`` give
    (an all-NaN mask has range (NaN, NaN), taken in mask order as before)."""
    import warnings

    from masksearch.index.chi import value_ranges
    from masksearch.store.manifest import Manifest
    from masksearch.store.writer import segment_edges

    if all_nan_first and ms_[0].dtype.kind == "f":
        ms_ = [np.full_like(ms_[0], np.nan), *ms_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN slices
        lows = [float(np.nanmin(kernel_view(m))) for m in ms_]
        highs = [float(np.nanmax(kernel_view(m))) for m in ms_]
    got = value_ranges(ms_)
    np.testing.assert_array_equal(got, np.array([lows, highs]).T)
    expected = default_edges(ms_[0].dtype, min(lows), max(highs))
    np.testing.assert_array_equal(segment_edges(Manifest(), ms_), expected)
