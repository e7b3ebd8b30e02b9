"""What the server needs to know about a statement before or besides running it: whether it
changes data, and which CP term its pictures should show."""

from __future__ import annotations

import re
from typing import Any

from ..errors import MaskSearchError
from ..lang import ast
from ..lang.parser import parse

# First words of statements that change data or the schema (refused unless --allow-writes).
WRITE_WORDS = frozenset({"delete", "update", "alter", "insert", "drop", "create", "replace",
                         "truncate", "attach", "copy", "vacuum", "merge", "upsert"})
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.S)
_WORD = re.compile(r"[A-Za-z_]+")


def first_keyword(sql: str) -> str:
    """The statement's first word, lower-case, after blanks, comments and parentheses."""
    m = _WORD.match(sql, _LEADING.match(sql).end())   # type: ignore[union-attr]
    return m.group(0).lower() if m else ""


def changes_data(sql: str) -> bool:
    """DELETE, UPDATE, ALTER TABLE, or EXPLAIN ANALYZE of DELETE or UPDATE (which runs it);
    text that does not parse is judged by its first word."""
    try:
        stmt = parse(sql)
    except MaskSearchError:
        return first_keyword(sql) in WRITE_WORDS
    if isinstance(stmt, ast.Explain):
        return stmt.analyze and not isinstance(stmt.select, ast.Select)
    return not isinstance(stmt, ast.Select)


def _range_text(r: ast.Range) -> str:
    return f"{'[' if r.lo_closed else '('}{r.lo}, {r.hi}{']' if r.hi_closed else ')'}"


def _roi_value(roi: ast.Roi) -> str | list[int] | None:
    if isinstance(roi, ast.BoxRoi):
        return [roi.x0, roi.y0, roi.x1, roi.y1]
    if isinstance(roi, ast.ColumnRoi):
        return roi.name
    return None


def _first_cp(exprs: list[ast.Expr]) -> ast.CP | None:
    for e in exprs:
        for node in ast.walk(e):
            if isinstance(node, ast.CP):
                return node
    return None


def _resolve(e: ast.Expr, aliases: dict[str, ast.Expr]) -> ast.Expr:
    """An ORDER BY key naming a select-list alias stands for that item's expression."""
    if isinstance(e, ast.Column) and e.name.lower() in aliases:
        return aliases[e.name.lower()]
    return e


def picture_term(sql: str) -> dict[str, Any] | None:
    """The CP term the pictures of a result show (as the renderer's cards choose it): the
    first in ORDER BY, else in WHERE, else in the select list, else in HAVING; ``None`` when
    there is none or the text does not parse.
    Gives ``{"roi": None | column | [x0, y0, x1, y1], "range": "(lo, hi]", "aggregate"}``."""
    try:
        stmt = parse(sql)
    except MaskSearchError:
        return None
    select = stmt.select if isinstance(stmt, ast.Explain) else stmt
    if not isinstance(select, ast.Select):
        return None
    items = [i for i in select.items if i.expr is not None]
    aliases = {i.alias.lower(): i.expr for i in items if i.alias and i.expr is not None}
    candidates = [
        [_resolve(o.expr, aliases) for o in select.order_by],
        [select.where] if select.where is not None else [],
        [i.expr for i in items if i.expr is not None],
        [select.having] if select.having is not None else [],
    ]
    for exprs in candidates:
        where = [_resolve(e, aliases) for e in exprs]
        cp = _first_cp(where) or _first_cp([aliases.get(n.name.lower(), n) for e in where
                                            for n in ast.walk(e)
                                            if isinstance(n, ast.Column)])
        if cp is not None:
            return {"roi": _roi_value(cp.roi), "range": _range_text(cp.range),
                    "aggregate": cp.mask.aggregate}
    return None
