"""Bound query -> logical plan."""

from __future__ import annotations

from ..lang import ast
from ..lang.binder import BoundQuery
from .logical import Plan


def _conjuncts(e):
    if isinstance(e, ast.And):
        for x in e.items:
            yield from _conjuncts(x)
    else:
        yield e


# Always kept: rows are identified, located in the store and clipped by these.
ROW_COLUMNS = ("mask_id", "height", "width", "_seg", "_row")


def referenced_columns(q: BoundQuery) -> frozenset[str]:
    """The metadata columns the query reads, with those every row needs."""
    exprs = [*q.outputs, *(o.expr for o in q.order_by), *q.group_by]
    exprs += [e for e in (q.where, q.having) if e is not None]
    names = set(ROW_COLUMNS)
    for e in exprs:
        for n in ast.walk(e):
            if isinstance(n, ast.Column):
                names.add(n.name)
            elif isinstance(n, (ast.CP, ast.Area)) and isinstance(n.roi, ast.ColumnRoi):
                names.add(n.roi.name)
    names.update(t.roi.name for t in q.terms if isinstance(t.roi, ast.ColumnRoi))
    return frozenset(names)


def plan(q: BoundQuery) -> Plan:
    """Split WHERE into metadata-only and CP conjuncts and choose how rows are selected."""
    meta, cp = [], []
    if q.where is not None:
        for c in _conjuncts(q.where):
            (cp if ast.has_terms(c) else meta).append(c)
    keys = q.order_by
    if q.limit is None:
        strategy = "full"
    elif not any(ast.has_terms(o.expr) for o in keys):
        strategy = "ordered_scan"
    elif ast.has_terms(keys[0].expr):
        strategy = "bounded_topk"
    else:
        strategy = "full"
    output_terms = set()
    for e in list(q.outputs) + [o.expr for o in keys]:
        for n in ast.walk(e):
            if q.grouped and (isinstance(n, ast.Aggregate) or (
                    isinstance(n, ast.CP) and n.mask.aggregate is not None)):
                output_terms.add(q.group_terms.index(n))
            elif not q.grouped and isinstance(n, ast.CP):
                output_terms.add(q.term_of[n])
    return Plan(q, tuple(meta), tuple(cp), keys, q.limit, strategy, frozenset(output_terms),
                q.grouped, q.group_by, q.having, referenced_columns(q))
