"""A brute-force reference: query specs rendered to SQL for the engine and evaluated here
directly over the pixels with NumPy and plain Python (SQL NULL semantics by hand)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .strategies import brute_cp


def num_text(v: float | int) -> str:
    """A literal whose exact decimal value is the given float64 (no rounding in the engine)."""
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return str(Decimal(v))


def roi_text(roi) -> str:
    if roi[0] == "full":
        return "full"
    if roi[0] == "box":
        return "box({}, {}, {}, {})".format(*roi[1:])
    return roi[1]


def range_text(rng) -> str:
    lo, lo_closed, hi, hi_closed = rng
    return f"{'[' if lo_closed else '('}{num_text(lo)}, {num_text(hi)}{']' if hi_closed else ')'}"


_RENDER = {
    "cp": lambda e: f"CP(mask, {roi_text(e[1])}, {range_text(e[2])})",
    "area": lambda e: f"area({roi_text(e[1])})",
    "num": lambda e: repr(e[1]) if isinstance(e[1], float) else str(e[1]),
    "str": lambda e: "'" + e[1].replace("'", "''") + "'",
    "col": lambda e: e[1],
    "neg": lambda e: f"-({render(e[1])})",
    "bin": lambda e: f"({render(e[2])} {e[1]} {render(e[3])})",
    "cmp": lambda e: f"({render(e[2])} {e[1]} {render(e[3])})",
    "and": lambda e: f"({render(e[1])} AND {render(e[2])})",
    "or": lambda e: f"({render(e[1])} OR {render(e[2])})",
    "not": lambda e: f"(NOT {render(e[1])})",
    "isnull": lambda e: f"({render(e[1])} IS {'NOT ' if e[2] else ''}NULL)",
    "between": lambda e: f"({render(e[1])} BETWEEN {render(e[2])} AND {render(e[3])})",
    "in": lambda e: f"({render(e[1])} IN ({', '.join(render(x) for x in e[2])}))",
    "agg": lambda e: "COUNT(*)" if e[1] == "count" else f"{e[1].upper()}({render(e[2])})",
    "gcp": lambda e: f"CP({e[1]}(mask), {roi_text(e[2])}, {range_text(e[3])})",
}


def render(e) -> str:
    """The SQL text of an expression spec."""
    return _RENDER[e[0]](e)


def _box(row, roi):
    h, w = row["pixels"].shape
    if roi[0] == "full":
        return (0, 0, w, h)
    if roi[0] == "box":
        return roi[1:]
    return row[roi[1]]          # a 4-tuple or None


def _area(row, roi):
    box = _box(row, roi)
    if box is None:
        return None
    h, w = row["pixels"].shape
    x0, y0, x1, y1 = box
    x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
    y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
    return max(x1 - x0, 0) * max(y1 - y0, 0)


_CMP = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def aggregate(func: str, values: list, n_rows: int):
    """SQL aggregates; float sums are correctly rounded (math.fsum)."""
    if func == "count":
        return n_rows
    values = [v for v in values if v is not None]
    if not values:
        return None
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        return math.nan
    if func == "min":
        return min(values)
    if func == "max":
        return max(values)
    if func == "sum":
        return sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
    return math.fsum(values) / len(values)


class ShapeMismatch(Exception):
    """A group's masks differ in shape: mask aggregation must fail."""


def group_cp(rows: list[dict], kind: str, roi, rng):
    """CP over the pixel-wise min / max / mean (float64; NaN propagates) of a group's masks."""
    if not rows:
        return None
    shapes = {r["pixels"].shape for r in rows}
    if len(shapes) > 1:
        raise ShapeMismatch
    stack = np.stack([r["pixels"].astype(np.float64) for r in rows])
    pixels = {"intersect": np.min, "union": np.max, "mean": np.mean}[kind](stack, axis=0)
    h, w = pixels.shape
    box = (0, 0, w, h) if roi[0] == "full" else roi[1:]
    return brute_cp(pixels, box, rng)


def _agg(e, row):
    rows = row["_rows"]
    values = [] if e[2] is None else [evaluate(e[2], r) for r in rows]
    return aggregate(e[1], values, len(rows))


def _cp(e, row):
    box = _box(row, e[1])
    return None if box is None else brute_cp(row["pixels"], box, e[2])


def _neg(e, row):
    v = evaluate(e[1], row)
    return None if v is None else -v


def _bin(e, row):
    a, b = evaluate(e[2], row), evaluate(e[3], row)
    if a is None or b is None:
        return None
    if e[1] == "/":
        return None if b == 0 else float(a) / float(b)
    return {"+": a + b, "-": a - b, "*": a * b}[e[1]]


def _cmp(e, row):
    a, b = evaluate(e[2], row), evaluate(e[3], row)
    return None if a is None or b is None else _CMP[e[1]](a, b)


def _and(e, row):
    a, b = evaluate(e[1], row), evaluate(e[2], row)
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(e, row):
    a, b = evaluate(e[1], row), evaluate(e[2], row)
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(e, row):
    a = evaluate(e[1], row)
    return None if a is None else not a


def _isnull(e, row):
    v = evaluate(e[1], row)
    return (v is not None) if e[2] else (v is None)


def _in(e, row):
    out = False
    for x in e[2]:
        hit = evaluate(("cmp", "=", e[1], x), row)
        if hit is True:
            return True
        if hit is None:
            out = None
    return out


_EVALUATE = {
    "gcp": lambda e, row: group_cp(row["_rows"], e[1], e[2], e[3]),
    "agg": _agg, "cp": _cp, "area": lambda e, row: _area(row, e[1]),
    "num": lambda e, row: e[1], "str": lambda e, row: e[1], "col": lambda e, row: row[e[1]],
    "neg": _neg, "bin": _bin, "cmp": _cmp, "and": _and, "or": _or, "not": _not,
    "isnull": _isnull, "in": _in,
    "between": lambda e, row: evaluate(("and", ("cmp", ">=", e[1], e[2]),
                                        ("cmp", "<=", e[1], e[3])), row),
}


def evaluate(e, row):
    """Value of ``e`` for a row, or for a group given as {"_rows": [...], key: value}."""
    return _EVALUATE[e[0]](e, row)


def statement(items, where, keys, having, order, limit) -> str:
    """SELECT text from its parts (expressions as specs)."""
    text = f"SELECT {', '.join(items)} FROM masks"
    if where is not None:
        text += f"\nWHERE {render(where)}"
    if keys:
        text += f"\nGROUP BY {', '.join(keys)}"
    if having is not None:
        text += f"\nHAVING {render(having)}"
    if order:
        text += "\nORDER BY " + ", ".join(f"{render(x)} {'DESC' if d else 'ASC'}"
                                          for x, d in order)
    if limit is not None:
        text += f"\nLIMIT {limit}"
    return text


def _order(units: list[dict], order, tie) -> list[dict]:
    """Sort by ``order`` (NULLs last both ways), ties by ``tie`` ascending (NULLs last)."""
    units = sorted(units, key=lambda u: [(u[k] is None, u[k] if u[k] is not None else 0)
                                         for k in tie])
    for expr, desc in reversed(order):
        vals = [(evaluate(expr, u), u) for u in units]
        present = [x for x in vals if x[0] is not None]
        present.sort(key=lambda x: x[0], reverse=desc)
        units = [u for _, u in present] + [u for v, u in vals if v is None]
    return units


@dataclass(frozen=True)
class GroupSpec:
    """SELECT keys..., select... FROM masks [WHERE] [GROUP BY keys] [HAVING] [ORDER BY] [LIMIT]."""

    keys: tuple            # group key column names; () = one group of all rows
    select: tuple          # group-level expressions
    where: object = None
    having: object = None
    order: tuple = ()
    limit: int | None = None

    def sql(self) -> str:
        items = list(self.keys) + [f"{render(e)} AS g{i}" for i, e in enumerate(self.select)]
        return statement(items, self.where, self.keys, self.having, self.order, self.limit)


def run_groups(spec: GroupSpec, rows: list[dict]) -> list[tuple]:
    keep = [r for r in rows if spec.where is None or evaluate(spec.where, r) is True]
    groups: dict = {}
    for r in keep:
        groups.setdefault(tuple(r[k] for k in spec.keys), []).append(r)
    if not spec.keys:
        groups = {(): keep}
    units = [dict(zip(spec.keys, key, strict=True), _rows=members)
             for key, members in groups.items()]
    uses_masks = any("'gcp'" in repr(e) for e in
                     [*spec.select, spec.having, *(x for x, _ in spec.order)])
    if uses_masks and any(len({r["pixels"].shape for r in u["_rows"]}) > 1 for u in units):
        raise ShapeMismatch
    units = [u for u in units if spec.having is None or evaluate(spec.having, u) is True]
    units = _order(units, spec.order, spec.keys)
    if spec.limit is not None:
        units = units[:spec.limit]
    return [tuple(u[k] for k in spec.keys) + tuple(evaluate(e, u) for e in spec.select)
            for u in units]


@dataclass(frozen=True)
class QuerySpec:
    select: tuple          # expressions
    where: object = None
    order: tuple = ()      # (expr, descending)
    limit: int | None = None

    def sql(self) -> str:
        items = ["mask_id"] + [f"{render(e)} AS c{i}" for i, e in enumerate(self.select)]
        return statement(items, self.where, (), None, self.order, self.limit)


def run(spec: QuerySpec, rows: list[dict]) -> list[tuple]:
    """The rows the statement must return, in order."""
    keep = [r for r in rows if spec.where is None or evaluate(spec.where, r) is True]
    keep = _order(keep, spec.order, ("mask_id",))
    if spec.limit is not None:
        keep = keep[:spec.limit]
    return [(r["mask_id"], *[evaluate(e, r) for e in spec.select]) for r in keep]


def as_rows(masks: list[np.ndarray], first_id: int, metadata: dict) -> list[dict]:
    out = []
    for i, m in enumerate(masks):
        row = {"mask_id": first_id + i, "image_id": (first_id + i) // 2, "pixels": m}
        for name, values in metadata.items():
            v = values[i]
            row[name] = tuple(int(c) for c in v) if name == "bbox" and v is not None else v
        out.append(row)
    return out
