"""Hypothesis strategies: random masks, boxes and ranges with the values that matter."""

from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import strategies as st

# make test-all (CI) runs every property test with its full number of examples; make test,
# the quick loop, with half of them.
THOROUGH = os.environ.get("MASKSEARCH_TESTS") == "all"


def examples(n: int) -> int:
    """How many examples a property test runs: ``n`` in the full run, half in the quick."""
    return n if THOROUGH else max(10, n // 2)

DTYPES = ("bool", "uint8", "uint16", "float16", "float32")
FLOAT_VALUES = (0.0, 0.05, 0.1, 0.25, 0.5, 0.6, 0.75, 0.8, 0.95, 1.0)


@st.composite
def masks(draw, dtype=None, max_side=24, min_side=1):
    """A 2-D mask with clustered values: edge values, repeats, NaN and inf for floats."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random((h, w)) < draw(st.floats(0, 1))
    if dtype in ("uint8", "uint16"):
        top = draw(st.sampled_from([1, 3, 10, 40, 255] + ([1000, 65535] if dtype == "uint16"
                                                           else [])))
        return rng.integers(0, top + 1, (h, w)).astype(dtype)
    style = draw(st.sampled_from(["unit", "edges", "mixed", "wide"]))
    if style == "unit":
        m = rng.random((h, w))
    elif style == "edges":
        m = rng.choice(np.array(FLOAT_VALUES), (h, w))
    elif style == "mixed":     # values on the bin edges next to values between them
        m = np.where(rng.random((h, w)) < 0.5, rng.choice(np.array(FLOAT_VALUES), (h, w)),
                     rng.random((h, w)))
    else:
        m = rng.normal(0, 50, (h, w))
    m = m.astype(dtype)
    if draw(st.booleans()):
        m[rng.random((h, w)) < 0.15] = np.nan
        if np.isnan(m).all():
            m[0, 0] = 0.5
    if style == "wide" and draw(st.booleans()):
        m[rng.random((h, w)) < 0.05] = np.inf
    return m


def range_ends(pixels: np.ndarray | None = None):
    """Range end values: edges, values present in the mask, random, and infinities."""
    options = [st.sampled_from((*FLOAT_VALUES, 2.0, 3.0, 40.0, 255.0, -1.0)),
               st.floats(-100, 300, allow_nan=False, width=32).map(float),
               st.integers(-2, 300).map(float)]
    if pixels is not None:
        finite = pixels[np.isfinite(pixels.astype(np.float64))]
        if finite.size:
            options.append(st.sampled_from(sorted(set(finite.astype(np.float64).tolist()))))
    return st.one_of(*options)


@st.composite
def value_ranges(draw, pixels=None):
    """(lo, lo_closed, hi, hi_closed) describing a non-empty range."""
    a = draw(range_ends(pixels))
    b = draw(range_ends(pixels))
    lo, hi = min(a, b), max(a, b)
    if draw(st.integers(0, 9)) == 0:
        lo = -math.inf
    if draw(st.integers(0, 9)) == 0:
        hi = math.inf
    lo_closed, hi_closed = draw(st.booleans()), draw(st.booleans())
    if lo == hi:
        lo_closed = hi_closed = True
    if math.isinf(lo):
        lo_closed = False
    if math.isinf(hi):
        hi_closed = False
    return lo, lo_closed, hi, hi_closed


@st.composite
def boxes(draw, h: int, w: int):
    """A box (x0, y0, x1, y1) that may stick out of an h x w mask or miss it."""
    x0 = draw(st.integers(-3, w + 2))
    y0 = draw(st.integers(-3, h + 2))
    x1 = draw(st.integers(x0, w + 4))
    y1 = draw(st.integers(y0, h + 4))
    return x0, y0, x1, y1


def range_text(lo: float, lo_closed: bool, hi: float, hi_closed: bool) -> str:
    def end(v: float) -> str:
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(float(v))

    return f"{'[' if lo_closed else '('}{end(lo)}, {end(hi)}{']' if hi_closed else ')'}"


def brute_cp(pixels: np.ndarray, box, rng) -> int:
    """The reference count: NumPy over the clipped box, NaN never counted."""
    lo, lo_closed, hi, hi_closed = rng
    h, w = pixels.shape
    x0, y0, x1, y1 = box
    x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
    y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
    if x1 <= x0 or y1 <= y0:
        return 0
    v = pixels[y0:y1, x0:x1].astype(np.float64)
    above = v >= lo if lo_closed else v > lo
    below = v <= hi if hi_closed else v < hi
    return int((above & below).sum())
