"""What a result's pictures show of its query: the CP term drawn on every card (the first in
ORDER BY, else in WHERE, else in the select list), the aggregated masks of grouped queries,
and the query text extended with the columns pictures need (mask ids, group keys)."""

from __future__ import annotations

from collections.abc import Iterable

from ..lang import ast
from ..lang.binder import BoundQuery
from ..lang.parser import parse

AGGREGATES = ("intersect", "union", "mean")


def _cps(exprs: Iterable[ast.Expr | None]) -> list[ast.CP]:
    return [n for e in exprs if e is not None for n in ast.walk(e) if isinstance(n, ast.CP)]


def shown_term(query: BoundQuery) -> ast.CP | None:
    """The CP term the pictures outline: the first in ORDER BY, else WHERE, else the select
    list (then HAVING), or None."""
    for exprs in ([o.expr for o in query.order_by], [query.where], query.outputs,
                  [query.having]):
        found = _cps(exprs)
        if found:
            return found[0]
    return None


def aggregate_terms(query: BoundQuery) -> list[ast.CP]:
    """The distinct CP terms over intersect/union/mean of a grouped query, in the order of
    ORDER BY, select list, HAVING: one aggregated picture each (one per kind of
    aggregate)."""
    seen: dict[str, ast.CP] = {}
    exprs = [*(o.expr for o in query.order_by), *query.outputs, query.having]
    for cp in _cps(exprs):
        kind = cp.mask.aggregate
        if kind in AGGREGATES and kind not in seen:
            seen[kind] = cp
    return list(seen.values())


def roi_arg(roi: ast.Roi) -> str | tuple[int, int, int, int]:
    """A CP term's region as ``Database.render`` takes it."""
    if isinstance(roi, ast.BoxRoi):
        return roi.x0, roi.y0, roi.x1, roi.y1
    if isinstance(roi, ast.ColumnRoi):
        return roi.name
    return "full"


def range_arg(r: ast.Range) -> str:
    """A CP term's range as written (``'(0.6, 1.0]'``)."""
    return f"{'[' if r.lo_closed else '('}{r.lo}, {r.hi}{']' if r.hi_closed else ')'}"


def term_text(cp: ast.CP) -> str:
    mask = "mask" if cp.mask.aggregate is None else f"{cp.mask.aggregate}(mask)"
    roi = roi_arg(cp.roi)
    region = roi if isinstance(roi, str) else "box({}, {}, {}, {})".format(*roi)
    return f"CP({mask}, {region}, {range_arg(cp.range)})"


def with_columns(sql: str, columns: list[str]) -> str | None:
    """``sql`` with ``name AS _ms_<i>`` appended to its select list for each column (ORDER BY
    positions keep pointing where they did), or None when it is not a plain SELECT."""
    stmt = parse(sql)
    if not isinstance(stmt, ast.Select) or not stmt.items or stmt.items[-1].pos is None:
        return None
    end = stmt.items[-1].pos[3]
    extra = "".join(f", {name} AS _ms_{i}" for i, name in enumerate(columns))
    return sql[:end] + extra + sql[end:]


def where_text(sql: str) -> str | None:
    """The WHERE condition of a SELECT as written, or None."""
    stmt = parse(sql)
    if not isinstance(stmt, ast.Select) or stmt.where is None or stmt.where.pos is None:
        return None
    return sql[stmt.where.pos[2]:stmt.where.pos[3]]
