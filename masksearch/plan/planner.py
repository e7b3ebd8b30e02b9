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
                q.grouped, q.group_by, q.having)
