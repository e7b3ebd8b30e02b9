"""Bound query -> physical plan: which predicates run on metadata and which on bounds, how
rows or groups are chosen, and what the merge does."""

from __future__ import annotations

from collections.abc import Iterator

from ..lang import ast
from ..lang.binder import BoundQuery
from .operators import (
    BoundFilter,
    BoundOrderTopK,
    GroupAggregate,
    GroupBounds,
    GroupFilter,
    KeyOrderTopK,
    MaskAggregation,
    MergeRows,
    MetaFilter,
    PartialGroupBounds,
    Project,
    Scan,
    Selection,
    Verify,
    VerifyAll,
)
from .physical import Fragment, GroupMerge, PhysicalPlan, RowMerge

# Always read: rows are identified, located in the store and clipped by these.
ROW_COLUMNS = ("mask_id", "height", "width", "_seg", "_row")


def conjuncts(e: ast.Expr) -> Iterator[ast.Expr]:
    """The items of a conjunction (AND of ANDs), or ``e`` itself."""
    if isinstance(e, ast.And):
        for x in e.items:
            yield from conjuncts(x)
    else:
        yield e


def conjunction(items: list[ast.Expr]) -> ast.Expr:
    return items[0] if len(items) == 1 else ast.And(tuple(items))


def referenced_columns(q: BoundQuery) -> tuple[str, ...]:
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
    return tuple(sorted(names))


def selection(order_by: tuple[ast.OrderItem, ...], limit: int | None) -> Selection:
    """Early-stopping top-k where LIMIT allows it: in key order when the keys need no
    pixels, best bound first when the first key holds CP; else verify all, then sort."""
    if limit is None:
        return VerifyAll(order_by)
    if not any(ast.has_terms(o.expr) for o in order_by):
        return KeyOrderTopK(order_by, k=limit)
    if ast.has_terms(order_by[0].expr):
        return BoundOrderTopK(order_by, k=limit)
    return VerifyAll(order_by, limit)


def _output_terms(q: BoundQuery) -> tuple[int, ...]:
    """The terms the output needs exact: CP terms (rows) or aggregates (groups) of the
    select list and the order keys."""
    found = set()
    for e in [*q.outputs, *(o.expr for o in q.order_by)]:
        for n in ast.walk(e):
            if q.grouped and (isinstance(n, ast.Aggregate) or (
                    isinstance(n, ast.CP) and n.mask.aggregate is not None)):
                found.add(q.group_terms.index(n))
            elif not q.grouped and isinstance(n, ast.CP):
                found.add(q.term_of[n])
    return tuple(sorted(found))


def plan(q: BoundQuery) -> PhysicalPlan:
    """The physical plan of a bound statement."""
    meta: list[ast.Expr] = []
    cp: list[ast.Expr] = []
    for c in conjuncts(q.where) if q.where is not None else ():
        (cp if ast.has_terms(c) else meta).append(c)
    row_terms = tuple(sorted(q.term_of, key=q.term_of.__getitem__))
    select = selection(q.order_by, q.limit)
    project = Project(q.names, q.outputs)
    fragment = Fragment(
        scan=Scan(referenced_columns(q)),
        meta_filter=MetaFilter(conjunction(meta)) if meta else None,
        bound_filter=BoundFilter(conjunction(cp)) if cp else None,
        verify=Verify(row_terms) if row_terms else None,
        select=None if q.grouped else select,
        project=None if q.grouped else project,
        members=PartialGroupBounds(q.group_by) if q.grouped else None)
    merge: RowMerge | GroupMerge
    if q.grouped:
        mask_terms = tuple(t for t in q.group_terms if isinstance(t, ast.CP))
        merge = GroupMerge(GroupAggregate(q.group_by), GroupBounds(tuple(q.group_terms)),
                           GroupFilter(q.having) if q.having is not None else None,
                           MaskAggregation(mask_terms) if mask_terms else None, select, project)
    else:
        merge = RowMerge(MergeRows(q.order_by, q.limit))
    return PhysicalPlan(q, fragment, merge, _output_terms(q))
