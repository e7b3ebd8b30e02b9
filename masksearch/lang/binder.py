"""Resolve a parsed statement against the database's columns and check its types.

The binder expands ``*``, select-list aliases and ``ORDER BY <position>``, desugars
``BETWEEN`` and ``IN`` into comparisons, turns CP ranges into exact cuts, and collects the
distinct CP terms. Everything after it can assume a well-typed query.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import BindError
from ..ranges import Cut, is_empty_range, range_cuts
from . import ast
from .parser import parse_range_text

TABLE_NAMES = ("masks", "masksdatabaseview")
NUMBER, STRING, BOOL, BOX, NULL = "number", "string", "bool", "box", "null"
LOGICAL_TO_TYPE = {"int64": NUMBER, "float64": NUMBER, "string": STRING, "bool": BOOL,
                   "box": BOX, "null": NULL}


@dataclass(frozen=True)
class CPTerm:
    """One distinct CP term: its region and the two cuts its range becomes."""

    roi: ast.Roi
    lo: Cut         # pixels satisfying this cut are below the range
    hi: Cut         # pixels satisfying this cut are not above the range


@dataclass(frozen=True)
class BoundQuery:
    text: str
    names: tuple[str, ...]                 # output column names
    outputs: tuple[ast.Expr, ...]          # select-list expressions
    where: ast.Expr | None
    order_by: tuple[ast.OrderItem, ...]
    limit: int | None
    terms: tuple[CPTerm, ...]              # distinct row-level CP terms
    term_of: dict                          # ast.CP -> index into terms
    explain: bool = False
    analyze: bool = False
    grouped: bool = False                  # GROUP BY, HAVING or aggregates: rows are groups
    group_by: tuple[ast.Column, ...] = ()
    having: ast.Expr | None = None
    group_terms: tuple = ()                # distinct aggregates and per-group CP terms
    group_cuts: dict = field(default_factory=dict)   # per-group ast.CP -> its CPTerm


class _Binder:
    def __init__(self, text: str, columns: dict[str, str]):
        self.text = text
        self.columns = columns
        self.types = {name: LOGICAL_TO_TYPE[kind] for name, kind in columns.items()}
        self.terms: list[CPTerm] = []
        self.term_of: dict[ast.CP, int] = {}
        self.aliases: dict[str, ast.Expr] = {}
        self.cuts: dict[ast.CP, CPTerm] = {}

    # --- errors ---
    def error(self, message: str, node, cls=BindError):
        pos = getattr(node, "pos", None)
        if pos is None:
            return cls(message)
        return cls(message, self.text, pos[0], pos[1])

    def source(self, node) -> str:
        pos = getattr(node, "pos", None)
        if pos is None:
            return type(node).__name__
        return " ".join(self.text[pos[2]:pos[3]].split())

    # --- statement ---
    def bind(self, stmt) -> BoundQuery:
        explain = analyze = False
        if isinstance(stmt, ast.Explain):
            explain, analyze, stmt = True, stmt.analyze, stmt.select
        select: ast.Select = stmt
        if select.table.lower() not in TABLE_NAMES:
            raise self.error(f"unknown table {select.table!r}; the table is 'masks' (or "
                             "'MasksDatabaseView')", select)
        grouped = bool(select.group_by) or select.having is not None or any(
            item.expr is not None and _has_aggregate(item.expr) for item in select.items) or any(
            _has_aggregate(o.expr) for o in select.order_by)
        # A key named twice groups the same way as once.
        group_by = tuple(dict.fromkeys(self.group_key(e) for e in select.group_by))
        names, outputs = [], []
        for item in select.items:
            if item.expr is None:
                if grouped:
                    raise self.error("SELECT * cannot be used with GROUP BY or aggregates",
                                     item)
                for name in self.columns:
                    names.append(name)
                    outputs.append(ast.Column(name))
                continue
            expr = self.expr(item.expr, allow_alias=False)
            name = item.alias or self.source(item.expr)
            names.append(name)
            outputs.append(expr)
            if item.alias:
                self.aliases[item.alias.lower()] = expr
        where = None
        if select.where is not None:
            where = self.expr(select.where, allow_alias=True)
            self.require(where, BOOL, "WHERE")
            self.check_row_level(where, "WHERE")
        having = None
        if select.having is not None:
            having = self.expr(select.having, allow_alias=True)
            self.require(having, BOOL, "HAVING")
        order = []
        for item in select.order_by:
            if isinstance(item.expr, ast.Literal) and item.expr.text.isdigit():
                n = item.expr.value
                if not 1 <= n <= len(outputs):
                    raise self.error(f"ORDER BY {n}: the select list has {len(outputs)} "
                                     "items", item.expr)
                expr = outputs[n - 1]
            else:
                expr = self.expr(item.expr, allow_alias=True)
            if self.type_of(expr) == BOX:
                raise self.error("cannot order by a box", item.expr)
            order.append(ast.OrderItem(expr, item.descending, item.pos))
        group_terms: list = []
        if grouped:
            keys = set(group_by)
            for e in [*outputs, *(o.expr for o in order)] + ([having] if having else []):
                self.check_group_level(e, keys, group_terms)
        else:
            for e in [*outputs, *(o.expr for o in order)]:
                self.check_row_level(e, "a query without GROUP BY")
        return BoundQuery(self.text, tuple(names), tuple(outputs), where, tuple(order),
                          select.limit, tuple(self.terms), dict(self.term_of), explain, analyze,
                          grouped, group_by, having, tuple(group_terms),
                          {c: self.cuts[c] for c in group_terms if isinstance(c, ast.CP)})

    def group_key(self, node) -> ast.Column:
        if not isinstance(node, ast.Column):
            raise self.error("GROUP BY takes column names", node)
        col = self.column(node, allow_alias=False)
        if self.types[col.name] == BOX:
            raise self.error(f"cannot group by the box column {col.name!r}", node)
        return col

    def check_row_level(self, e, where: str) -> None:
        """No aggregates and no mask aggregation outside grouped queries."""
        for n in ast.walk(e):
            if isinstance(n, ast.Aggregate):
                raise self.error(f"aggregate {n.func.upper()} cannot be used in {where}", n)
            if isinstance(n, ast.CP) and n.mask.aggregate is not None:
                raise self.error(f"{n.mask.aggregate}(mask) is one mask per group; it cannot "
                                 f"be used in {where}", n.mask)

    def check_group_level(self, e, keys: set, group_terms: list) -> None:
        """Outside aggregates only group keys, literals and per-group CP terms may appear."""
        if isinstance(e, ast.Aggregate):
            if e.arg is not None:
                for n in ast.walk(e.arg):
                    if isinstance(n, ast.Aggregate):
                        raise self.error("aggregates cannot be nested", n)
                    if isinstance(n, ast.CP) and n.mask.aggregate is not None:
                        raise self.error(f"{n.mask.aggregate}(mask) is a per-group mask; "
                                         "it cannot be used inside an aggregate", n.mask)
            if e not in group_terms:
                group_terms.append(e)
            return
        if isinstance(e, ast.Column) and e not in keys:
            raise self.error(f"column {e.name!r} must be in GROUP BY or inside an aggregate",
                             e)
        if isinstance(e, ast.CP):
            if e.mask.aggregate is None:
                raise self.error("CP(mask, ...) over single masks must be inside an aggregate "
                                 "in a grouped query (or use intersect/union/mean(mask))", e)
            if isinstance(e.roi, ast.ColumnRoi):
                raise self.error(f"{e.mask.aggregate}(mask) is one mask per group: its region "
                                 "must be full or box(...), not a per-mask box column", e.roi)
            if e not in group_terms:
                group_terms.append(e)
            return
        if isinstance(e, ast.Area):
            raise self.error("area(...) is per mask: in a grouped query put it inside an "
                             "aggregate", e)
        for child in ast.children(e):
            self.check_group_level(child, keys, group_terms)

    def require(self, expr, kind: str, where: str) -> None:
        t = self.type_of(expr)
        if t not in (kind, NULL):
            raise self.error(f"{where} needs a {'predicate' if kind == BOOL else kind}, "
                             f"got {t}: {self.source(expr)}", expr)

    # --- expressions ---
    def expr(self, node, allow_alias: bool):
        e = self._expr(node, allow_alias)
        self.type_of(e)
        return e

    def _expr(self, node, allow_alias: bool):
        rec = lambda n: self._expr(n, allow_alias)  # noqa: E731
        if isinstance(node, ast.Literal):
            return node
        if isinstance(node, ast.Column):
            return self.column(node, allow_alias)
        if isinstance(node, ast.CP):
            return self.cp(node)
        if isinstance(node, ast.Area):
            return replace(node, roi=self.roi(node.roi))
        if isinstance(node, ast.Aggregate):
            return replace(node, arg=None if node.arg is None else rec(node.arg))
        if isinstance(node, ast.Neg):
            return replace(node, operand=rec(node.operand))
        if isinstance(node, (ast.BinOp, ast.Compare)):
            return replace(node, left=rec(node.left), right=rec(node.right))
        if isinstance(node, (ast.And, ast.Or)):
            return replace(node, items=tuple(rec(x) for x in node.items))
        if isinstance(node, ast.Not):
            return replace(node, operand=rec(node.operand))
        if isinstance(node, ast.IsNull):
            return replace(node, operand=rec(node.operand))
        if isinstance(node, ast.Between):
            x, lo, hi = rec(node.operand), rec(node.low), rec(node.high)
            inner = ast.And((ast.Compare(">=", x, lo, node.pos), ast.Compare("<=", x, hi, node.pos)),
                            node.pos)
            return ast.Not(inner, node.pos) if node.negated else inner
        if isinstance(node, ast.InList):
            x = rec(node.operand)
            eqs = tuple(ast.Compare("=", x, rec(item), item.pos) for item in node.items)
            inner = eqs[0] if len(eqs) == 1 else ast.Or(eqs, node.pos)
            return ast.Not(inner, node.pos) if node.negated else inner
        raise self.error(f"unexpected {type(node).__name__}", node)

    def column(self, node: ast.Column, allow_alias: bool):
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
        raise self.error(f"unknown column {node.name!r}; columns are: {known}{alias_note}", node)

    def roi(self, roi):
        if isinstance(roi, ast.BoxRoi):
            if any(abs(v) > 2**62 for v in (roi.x0, roi.y0, roi.x1, roi.y1)):
                raise self.error("box coordinates are out of range", roi)
            if roi.x1 < roi.x0 or roi.y1 < roi.y0:
                raise self.error(f"box({roi.x0}, {roi.y0}, {roi.x1}, {roi.y1}) has x1 < x0 or "
                                 "y1 < y0 (a box is x0, y0, x1, y1)", roi)
            return roi
        if isinstance(roi, ast.ColumnRoi):
            col = self.column(ast.Column(roi.name, roi.pos), allow_alias=False)
            if self.types[col.name] != BOX:
                raise self.error(f"column {col.name!r} is not a box column (it holds "
                                 f"{self.columns[col.name]} values)", roi)
            return ast.ColumnRoi(col.name, roi.pos)
        return roi

    def cp(self, node: ast.CP):
        roi = self.roi(node.roi)
        r = node.range
        if is_empty_range(r.lo, r.lo_closed, r.hi, r.hi_closed):
            raise self.error(f"empty range {self.source(r)}: the lower end must be below the "
                             "upper end (or both ends equal and included)", r)
        term = CPTerm(roi, *range_cuts(r.lo, r.lo_closed, r.hi, r.hi_closed))
        bound = replace(node, roi=roi)
        self.cuts[bound] = term
        if bound.mask.aggregate is None and bound not in self.term_of:
            self.term_of[bound] = len(self.terms)
            self.terms.append(term)
        return bound

    # --- types ---
    def type_of(self, e) -> str:
        if isinstance(e, ast.Literal):
            v = e.value
            if v is None:
                return NULL
            if isinstance(v, bool):
                return BOOL
            return STRING if isinstance(v, str) else NUMBER
        if isinstance(e, ast.Column):
            return self.types[e.name]
        if isinstance(e, (ast.CP, ast.Area)):
            return NUMBER
        if isinstance(e, ast.Neg):
            self.require(e.operand, NUMBER, "unary minus")
            return NUMBER
        if isinstance(e, ast.BinOp):
            self.require(e.left, NUMBER, f"'{e.op}'")
            self.require(e.right, NUMBER, f"'{e.op}'")
            return NUMBER
        if isinstance(e, ast.Compare):
            lt, rt = self.type_of(e.left), self.type_of(e.right)
            for side, t in ((e.left, lt), (e.right, rt)):
                if t == BOX:
                    raise self.error(f"a box cannot be compared: {self.source(side)}", side)
            if NULL not in (lt, rt) and lt != rt:
                raise self.error(f"cannot compare {lt} with {rt}: {self.source(e)}", e)
            return BOOL
        if isinstance(e, (ast.And, ast.Or)):
            for x in e.items:
                self.require(x, BOOL, "AND" if isinstance(e, ast.And) else "OR")
            return BOOL
        if isinstance(e, ast.Not):
            self.require(e.operand, BOOL, "NOT")
            return BOOL
        if isinstance(e, ast.IsNull):
            self.type_of(e.operand)
            return BOOL
        if isinstance(e, ast.Aggregate):
            if e.arg is not None:
                self.require(e.arg, NUMBER, e.func.upper())
            return NUMBER
        raise self.error(f"unexpected {type(e).__name__}", e)


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


def bind(stmt, text: str, columns: dict[str, str]) -> BoundQuery:
    """Check ``stmt`` against ``columns`` (name -> logical type) and resolve it."""
    return _Binder(text, columns).bind(stmt)


def _has_aggregate(expr) -> bool:
    """An aggregate or a mask aggregation (both make one row per group)."""
    return any(isinstance(n, ast.Aggregate) or (isinstance(n, ast.CP) and n.mask.aggregate)
               for n in ast.walk(expr))
