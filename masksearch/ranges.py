"""Pixel-value ranges as cuts: the vocabulary the language (which makes them), the index and
the executor (which apply them) share.

A CP range is two *cuts*: the pixels counted are those failing the lower cut and passing the
upper one. Cut values are float64 numbers chosen so that, for every float64 pixel value,
comparing with the cut gives what comparing with the exact decimal written in the query gives
(``exact_cut``); ``index.chi.cut_for_dtype`` makes them exact for integer pixels as well.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Cut:
    """``value < t`` (incl False) or ``value <= t`` (incl True)."""

    t: float
    incl: bool


ALL = Cut(math.inf, True)        # every non-NaN pixel satisfies it
NONE = Cut(-math.inf, False)     # no pixel satisfies it


def exact_cut(text: str, incl: bool) -> Cut:
    """The float64 cut equal, for every float64 pixel value, to comparing with decimal
    ``text`` (``v < text``, or ``v <= text`` with ``incl``); ``text`` may be +-inf."""
    lowered = text.lower()
    if lowered in ("inf", "-inf"):
        return Cut(math.inf if lowered == "inf" else -math.inf, incl)
    frac = Fraction(text)
    biggest = Fraction(sys.float_info.max)
    if frac > biggest:        # beyond every finite float: `v < d` is `v <= max float`
        return Cut(sys.float_info.max, True)
    if frac < -biggest:       # below every finite float: only -inf pixels are below
        return Cut(-math.inf, True)
    f = float(frac)
    if Fraction(f) == frac:
        return Cut(f, incl)
    # No float lies strictly between text and the nearest float below it, so `v < d` and
    # `v <= d` are both `v <= below`.
    below = f if Fraction(f) < frac else math.nextafter(f, -math.inf)
    return Cut(below, True)


def end_value(text: str) -> Fraction | float:
    """The exact value of a range end as written (a Fraction, or +-inf)."""
    lowered = text.lower()
    if lowered in ("inf", "-inf"):
        return math.inf if lowered == "inf" else -math.inf
    return Fraction(text)


def range_cuts(lo: str, lo_closed: bool, hi: str, hi_closed: bool) -> tuple[Cut, Cut]:
    """The (lower, upper) cuts of the range with these ends (decimal texts or +-inf)."""
    return exact_cut(lo, not lo_closed), exact_cut(hi, hi_closed)


def is_empty_range(lo: str, lo_closed: bool, hi: str, hi_closed: bool) -> bool:
    """Whether no number lies in the range (lo > hi, equal ends not both included, or an
    end at the wrong infinity)."""
    lo_v, hi_v = end_value(lo), end_value(hi)
    return (lo_v > hi_v or (lo_v == hi_v and not (lo_closed and hi_closed))
            or lo_v == math.inf or hi_v == -math.inf)
