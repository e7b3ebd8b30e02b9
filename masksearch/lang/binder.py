"""Resolve a parsed statement against the database's columns and check its types.

The binder expands ``*``, select-list aliases and ``ORDER BY <position>``, desugars
``BETWEEN`` and ``IN`` into comparisons, turns CP ranges into exact cuts, and collects the
distinct CP terms. Everything after it can assume a well-typed query.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import BindError
from ..ranges import Cut, is_empty_range, range_cuts
from . import ast
from .levels import GroupTerms, check_group_level, check_row_level, has_aggregate
from .parser import parse_range_text
from .types import BOOL, BOX, LOGICAL_TO_TYPE, TypeChecker, located_error, source

TABLE_NAMES = ("masks", "masksdatabaseview")


@dataclass(frozen=True)
class CPTerm:
    """One distinct CP term: its region and the two cuts its range becomes."""

    roi: ast.Roi
    lo: Cut         # pixels satisfying this cut are below the range
    hi: Cut         # pixels satisfying this cut are not above the range


@dataclass(frozen=True)
class BoundQuery:
    """A statement resolved against the columns: what planning starts from."""

    text: str
    names: tuple[str, ...]                 # output column names
    outputs: tuple[ast.Expr, ...]          # select-list expressions
    where: ast.Expr | None
    order_by: tuple[ast.OrderItem, ...]
    limit: int | None
    terms: tuple[CPTerm, ...]              # distinct row-level CP terms
    term_of: Mapping[ast.CP, int]          # each row-level CP node -> its term
    explain: bool = False
    analyze: bool = False
    grouped: bool = False                  # GROUP BY, HAVING or aggregates: rows are groups
    group_by: tuple[ast.Column, ...] = ()
    having: ast.Expr | None = None
    group_terms: tuple[ast.Expr, ...] = ()  # distinct aggregates and per-group CP terms
    group_cuts: Mapping[ast.CP, CPTerm] = field(default_factory=dict)  # per-group CP terms


@dataclass
class _Items:
    """The select list as bound: output names and expressions."""

    names: list[str] = field(default_factory=list)
    outputs: list[ast.Expr] = field(default_factory=list)


class _Binder:
    def __init__(self, text: str, columns: Mapping[str, str]):
        self.text = text
        self.columns = columns
        self.types = {name: LOGICAL_TO_TYPE[kind] for name, kind in columns.items()}
        self.checker = TypeChecker(text, self.types)
        self.terms: list[CPTerm] = []
        self.term_of: dict[ast.CP, int] = {}
        self.aliases: dict[str, ast.Expr] = {}
        self.cuts: dict[ast.CP, CPTerm] = {}
        self._rules: dict[type, Callable[[Any, bool], ast.Expr]] = {
            ast.Literal: lambda n, a: n, ast.Column: self.column, ast.CP: self._cp,
            ast.Area: self._area, ast.Aggregate: self._aggregate, ast.Neg: self._operand,
            ast.Not: self._operand, ast.IsNull: self._operand, ast.BinOp: self._sides,
            ast.Compare: self._sides, ast.And: self._items, ast.Or: self._items,
            ast.Between: self._between, ast.InList: self._in_list}

    def error(self, message: str, node: object) -> BindError:
        return located_error(self.text, message, node)

    # --- statement ---
    def bind(self, stmt: ast.Select | ast.Explain) -> BoundQuery:
        explain = isinstance(stmt, ast.Explain)
        analyze = isinstance(stmt, ast.Explain) and stmt.analyze
        select = stmt.select if isinstance(stmt, ast.Explain) else stmt
        if not isinstance(select, ast.Select):   # EXPLAIN DELETE/UPDATE: lang/mutations
            raise self.error(f"{type(select).__name__.upper()} is bound as a change of data",
                             select)
        if select.table.lower() not in TABLE_NAMES:
            raise self.error(f"unknown table {select.table!r}; the table is 'masks' (or "
                             "'MasksDatabaseView')", select)
        grouped = _is_grouped(select)
        # A key named twice groups the same way as once.
        group_by = tuple(dict.fromkeys(self.group_key(e) for e in select.group_by))
        items = self.select_list(select.items, grouped)
        where = self.predicate(select.where, "WHERE")
        if where is not None:
            check_row_level(self.text, where, "WHERE")
        having = self.predicate(select.having, "HAVING")
        order = tuple(self.order_item(o, items.outputs) for o in select.order_by)
        group_terms: GroupTerms = []
        levelled = [*items.outputs, *(o.expr for o in order)]
        if grouped:
            for e in levelled + ([having] if having is not None else []):
                check_group_level(self.text, e, set(group_by), group_terms)
        else:
            for e in levelled:
                check_row_level(self.text, e, "a query without GROUP BY")
        return BoundQuery(self.text, tuple(items.names), tuple(items.outputs), where, order,
                          select.limit, tuple(self.terms), dict(self.term_of), explain, analyze,
                          grouped, group_by, having, tuple(group_terms),
                          {c: self.cuts[c] for c in group_terms if isinstance(c, ast.CP)})

    def select_list(self, select_items: tuple[ast.SelectItem, ...], grouped: bool) -> _Items:
        items = _Items()
        for item in select_items:
            if item.expr is None:
                if grouped:
                    raise self.error("SELECT * cannot be used with GROUP BY or aggregates",
                                     item)
                items.names += list(self.columns)
                items.outputs += [ast.Column(name) for name in self.columns]
                continue
            expr = self.expr(item.expr, allow_alias=False)
            items.names.append(item.alias or source(self.text, item.expr))
            items.outputs.append(expr)
            if item.alias:
                self.aliases[item.alias.lower()] = expr
        return items

    def predicate(self, node: ast.Expr | None, where: str) -> ast.Expr | None:
        """WHERE or HAVING, bound and checked to be a predicate."""
        if node is None:
            return None
        e = self.expr(node, allow_alias=True)
        self.checker.require(e, BOOL, where)
        return e

    def order_item(self, item: ast.OrderItem, outputs: list[ast.Expr]) -> ast.OrderItem:
        if isinstance(item.expr, ast.Literal) and item.expr.text.isdigit():
            n = item.expr.value
            assert isinstance(n, int)
            if not 1 <= n <= len(outputs):
                raise self.error(f"ORDER BY {n}: the select list has {len(outputs)} items",
                                 item.expr)
            expr = outputs[n - 1]
        else:
            expr = self.expr(item.expr, allow_alias=True)
        if self.checker.type_of(expr) == BOX:
            raise self.error("cannot order by a box", item.expr)
        return ast.OrderItem(expr, item.descending, item.pos)

    def group_key(self, node: ast.Expr) -> ast.Column:
        if not isinstance(node, ast.Column):
            raise self.error("GROUP BY takes column names", node)
        col = self.column(node, allow_alias=False)
        assert isinstance(col, ast.Column)
        if self.types[col.name] == BOX:
            raise self.error(f"cannot group by the box column {col.name!r}", node)
        return col

    # --- expressions ---
    def expr(self, node: ast.Expr, allow_alias: bool) -> ast.Expr:
        """``node`` resolved (columns, aliases, regions, ranges) and type-checked."""
        e = self._expr(node, allow_alias)
        self.checker.type_of(e)
        return e

    def _expr(self, node: ast.Expr, allow_alias: bool) -> ast.Expr:
        rule = self._rules.get(type(node))
        if rule is None:
            raise self.error(f"unexpected {type(node).__name__}", node)
        return rule(node, allow_alias)

    def _area(self, node: ast.Area, allow_alias: bool) -> ast.Expr:
        return replace(node, roi=self.roi(node.roi))

    def _aggregate(self, node: ast.Aggregate, allow_alias: bool) -> ast.Expr:
        return replace(node, arg=None if node.arg is None else self._expr(node.arg,
                                                                           allow_alias))

    def _operand(self, node: ast.Neg | ast.Not | ast.IsNull, allow_alias: bool) -> ast.Expr:
        return replace(node, operand=self._expr(node.operand, allow_alias))

    def _sides(self, node: ast.BinOp | ast.Compare, allow_alias: bool) -> ast.Expr:
        return replace(node, left=self._expr(node.left, allow_alias),
                       right=self._expr(node.right, allow_alias))

    def _items(self, node: ast.And | ast.Or, allow_alias: bool) -> ast.Expr:
        return replace(node, items=tuple(self._expr(x, allow_alias) for x in node.items))

    def _between(self, node: ast.Between, allow_alias: bool) -> ast.Expr:
        """``x [NOT] BETWEEN lo AND hi`` as ``[NOT] (x >= lo AND x <= hi)``."""
        x, lo, hi = (self._expr(n, allow_alias) for n in (node.operand, node.low, node.high))
        inner = ast.And((ast.Compare(">=", x, lo, node.pos), ast.Compare("<=", x, hi, node.pos)),
                        node.pos)
        return ast.Not(inner, node.pos) if node.negated else inner

    def _in_list(self, node: ast.InList, allow_alias: bool) -> ast.Expr:
        """``x [NOT] IN (a, b)`` as ``[NOT] (x = a OR x = b)``."""
        x = self._expr(node.operand, allow_alias)
        eqs = tuple(ast.Compare("=", x, self._expr(item, allow_alias), item.pos)
                    for item in node.items)
        inner: ast.Expr = eqs[0] if len(eqs) == 1 else ast.Or(eqs, node.pos)
        return ast.Not(inner, node.pos) if node.negated else inner

    def column(self, node: ast.Column, allow_alias: bool) -> ast.Expr:
        key = node.name.lower()
        for name in self.columns:
            if name.lower() == key:
                return ast.Column(name, node.pos)
        if allow_alias and key in self.aliases:
            return self.aliases[key]
        if key == "mask":
            raise self.error("mask can only be used inside CP(...)", node)
        known = ", ".join(self.columns)
        alias_note = f"; aliases: {', '.join(self.aliases)}" if self.aliases and not allow_alias \
            else ""
        raise self.error(f"unknown column {node.name!r}; {self._did_you_mean(key, allow_alias)}"
                         f"columns are: {known}{alias_note}", node)

    def _did_you_mean(self, key: str, allow_alias: bool) -> str:
        """``did you mean x? `` for the columns (and usable aliases) spelled closest to
        ``key`` (lower case), or nothing when none is close."""
        names = {name.lower(): name for name in self.columns}
        if allow_alias:
            names.update({alias: alias for alias in self.aliases if alias not in names})
        close = [names[c] for c in difflib.get_close_matches(key, list(names), n=3)]
        if not close:
            return ""
        either = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
        return f"did you mean {either}? "

    def roi(self, roi: ast.Roi) -> ast.Roi:
        if isinstance(roi, ast.BoxRoi):
            if any(abs(v) > 2**62 for v in (roi.x0, roi.y0, roi.x1, roi.y1)):
                raise self.error("box coordinates are out of range", roi)
            if roi.x1 < roi.x0 or roi.y1 < roi.y0:
                raise self.error(f"box({roi.x0}, {roi.y0}, {roi.x1}, {roi.y1}) has x1 < x0 or "
                                 "y1 < y0 (a box is x0, y0, x1, y1)", roi)
            return roi
        if isinstance(roi, ast.ColumnRoi):
            col = self.column(ast.Column(roi.name, roi.pos), allow_alias=False)
            assert isinstance(col, ast.Column)
            if self.types[col.name] != BOX:
                raise self.error(f"column {col.name!r} is not a box column (it holds "
                                 f"{self.columns[col.name]} values)", roi)
            return ast.ColumnRoi(col.name, roi.pos)
        return roi

    def _cp(self, node: ast.CP, allow_alias: bool) -> ast.Expr:
        roi = self.roi(node.roi)
        r = node.range
        if is_empty_range(r.lo, r.lo_closed, r.hi, r.hi_closed):
            raise self.error(f"empty range {source(self.text, r)}: the lower end must be "
                             "below the upper end (or both ends equal and included)", r)
        term = CPTerm(roi, *range_cuts(r.lo, r.lo_closed, r.hi, r.hi_closed))
        bound = replace(node, roi=roi)
        self.cuts[bound] = term
        if bound.mask.aggregate is None and bound not in self.term_of:
            self.term_of[bound] = len(self.terms)
            self.terms.append(term)
        return bound


def _is_grouped(select: ast.Select) -> bool:
    """GROUP BY, HAVING or an aggregate anywhere: the rows of the result are groups."""
    return bool(select.group_by) or select.having is not None or any(
        item.expr is not None and has_aggregate(item.expr) for item in select.items) or any(
        has_aggregate(o.expr) for o in select.order_by)


def parse_range(text: str) -> tuple[Cut, Cut]:
    """The (lower, upper) cuts of a range written as in CP, e.g. ``'(0.6, 1.0]'``; a
    ``QuerySyntaxError`` or, for an empty range, a ``BindError``, located in ``text``."""
    r = parse_range_text(text)
    if is_empty_range(r.lo, r.lo_closed, r.hi, r.hi_closed):
        assert r.pos is not None
        raise BindError(f"empty range {' '.join(text.split())}: the lower end must be below "
                        "the upper end (or both ends equal and included)", text, r.pos[0],
                        r.pos[1])
    return range_cuts(r.lo, r.lo_closed, r.hi, r.hi_closed)


def bind(stmt: ast.Select | ast.Explain, text: str, columns: Mapping[str, str]) -> BoundQuery:
    """Check ``stmt`` against ``columns`` (name -> logical type) and resolve it."""
    return _Binder(text, columns).bind(stmt)
