"""Notices: statements that are valid but probably do not mean what they say.

The REPL and the CLI print these before a result; they never change it. They need facts
about the stored values (``ValueSpan`` per pixel dtype), which the caller supplies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..ranges import end_value
from . import ast
from .binder import BoundQuery

# Integer masks whose values reach this, ten times the top of [0, 1], are on another scale
# than a range written for values in [0, 1]: 0..255 PNG masks, say.
SCALE_GAP = 10


@dataclass(frozen=True)
class ValueSpan:
    """The smallest and largest non-NaN pixel value of the (indexed) masks of one dtype."""

    dtype: str
    lo: float
    hi: float


def _range_text(r: ast.Range) -> str:
    return f"{'[' if r.lo_closed else '('}{r.lo}, {r.hi}{']' if r.hi_closed else ')'}"


def _where(node: ast.Range) -> str:
    return f"line {node.pos[0]}, column {node.pos[1]}: " if node.pos else ""


def _cp_nodes(q: BoundQuery) -> Iterator[ast.CP]:
    roots = [*q.outputs, q.where, q.having, *(o.expr for o in q.order_by)]
    seen: set[ast.Range] = set()
    for root in roots:
        if root is None:
            continue
        for node in ast.walk(root):
            if isinstance(node, ast.CP) and node.range not in seen:
                seen.add(node.range)
                yield node


def _has_integer(lo: Fraction | float, lo_closed: bool, hi: Fraction | float,
                 hi_closed: bool) -> bool:
    if math.isinf(lo) or math.isinf(hi):
        return True
    first = math.ceil(lo) if lo_closed else math.floor(lo) + 1
    return first < hi or (hi_closed and first == hi)


def _number(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{float(v):g}"


def _scale_notice(r: ast.Range, spans: list[ValueSpan]) -> str | None:
    """A range written for values in [0, 1] (both ends in [0, 1], one with a fraction) over
    integer masks whose values go well above it, such as (0.6, 1.0] over 0..255 masks:
    which of their values it covers, and the range on their scale."""
    lo, hi = end_value(r.lo), end_value(r.hi)
    if not (isinstance(lo, Fraction) and isinstance(hi, Fraction) and lo >= 0 and hi <= 1
            and (lo.denominator != 1 or hi.denominator != 1)):
        return None
    for s in spans:
        dtype = np.dtype(s.dtype)
        if dtype.kind != "u" or s.hi < SCALE_GAP:
            continue
        first = max(math.ceil(lo) if r.lo_closed else math.floor(lo) + 1, math.ceil(s.lo))
        last = min(math.floor(hi) if r.hi_closed else math.ceil(hi) - 1, math.floor(s.hi))
        values = list(range(first, last + 1))
        covered = ("no value of them" if not values else f"only the value {values[0]}"
                   if len(values) == 1 else "only the values "
                   + " and ".join(str(v) for v in values))
        note = (f"the {s.dtype} masks hold values from {s.lo:g} to {s.hi:g}, and "
                f"{_range_text(r)} covers {covered}")
        top = int(np.iinfo(dtype).max)
        if s.hi > top // 2:     # the masks use their dtype's scale, 0..255 or 0..65535
            scaled = _range_text(ast.Range(_number(lo * top), r.lo_closed, _number(hi * top),
                                           r.hi_closed))
            note += f"; for the same share of their scale 0..{top}, write {scaled}"
        return note
    return None


def query_notices(q: BoundQuery, spans: list[ValueSpan]) -> list[str]:
    """Advice about the ranges of ``q`` given what the masks hold (empty when all is well)."""
    out: list[str] = []
    for cp in _cp_nodes(q):
        r = cp.range
        lo, hi = end_value(r.lo), end_value(r.hi)
        text = _range_text(r)
        where = _where(r)
        floats = [s for s in spans if s.dtype.startswith("float")]
        if not r.hi_closed and any(s.hi == hi for s in floats):
            closed = _range_text(ast.Range(r.lo, r.lo_closed, r.hi, True))
            out.append(f"{where}{text} leaves out pixels equal to {r.hi}, the largest value "
                       f"the masks hold; write {closed} to count them")
        if spans and all(s.hi < lo or (s.hi == lo and not r.lo_closed) or s.lo > hi
                         or (s.lo == hi and not r.hi_closed) for s in spans):
            values = ", ".join(f"[{s.lo:g}, {s.hi:g}] ({s.dtype})" for s in spans)
            out.append(f"{where}no pixel lies in {text}: the masks' values span {values}, "
                       "so every such CP is 0")
        elif spans and all(not s.dtype.startswith("float") for s in spans) and not \
                _has_integer(lo, r.lo_closed, hi, r.hi_closed):
            out.append(f"{where}{text} holds no integer, and every mask has integer values, "
                       "so every such CP is 0")
        scale = _scale_notice(r, spans)
        if scale is not None:
            out.append(where + scale)
    return out
