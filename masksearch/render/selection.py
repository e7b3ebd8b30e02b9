"""What a CP term counts, pixel by pixel: the pixels inside the region whose value lies in
the range, decided by the same cuts the engine uses (``masksearch.ranges``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..errors import MaskSearchError
from ..lang.binder import parse_range
from ..ranges import Cut

Box = tuple[int, int, int, int]
RangeArg = str | tuple[float, float] | Sequence[float] | None


def range_cuts_of(value: RangeArg) -> tuple[Cut, Cut] | None:
    """The (lower, upper) cuts of a render range: None, a text as written in CP such as
    ``'(0.6, 1.0]'``, or a pair of numbers (lo, hi) meaning (lo, hi]."""
    if value is None:
        return None
    if isinstance(value, str):
        return _parsed(value)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise MaskSearchError(f"a range is a text such as '(0.6, 1.0]' or a pair (lo, hi), "
                              f"not {value!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise MaskSearchError(f"range ({lo}, {hi}]: the lower end must be below the upper")
    return Cut(lo, True), Cut(hi, True)


@lru_cache(maxsize=256)
def _parsed(text: str) -> tuple[Cut, Cut]:
    return parse_range(text)


def clip_box(box: Sequence[int], height: int, width: int) -> Box:
    """``box`` (x0, y0, x1, y1; x1, y1 excluded) clipped to the mask, as CP clips it; an
    empty box has x0 == x1 or y0 == y1."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)
    y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
    return x0, y0, max(x1, x0), max(y1, y0)


def _satisfies(v: np.ndarray, cut: Cut) -> np.ndarray:
    return v <= cut.t if cut.incl else v < cut.t


def in_range(pixels: np.ndarray, cuts: tuple[Cut, Cut]) -> np.ndarray:
    """(H, W) bool: the pixels in the range (failing the lower cut, passing the upper one;
    NaN never). Compared as float64, which holds every stored value exactly."""
    lo, hi = cuts
    v = pixels.astype(np.float64, copy=False)
    return ~_satisfies(v, lo) & _satisfies(v, hi) & ~np.isnan(v)


def selected(pixels: np.ndarray, box: Box | None, cuts: tuple[Cut, Cut] | None) -> np.ndarray:
    """(H, W) bool: the pixels CP(mask, box, range) counts (none without a range or box)."""
    out = np.zeros(pixels.shape, bool)
    if box is None or cuts is None:
        return out
    x0, y0, x1, y1 = clip_box(box, *pixels.shape)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = in_range(pixels[y0:y1, x0:x1], cuts)
    return out
