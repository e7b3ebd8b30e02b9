"""Grouped queries whose every aggregate the stored CHIs settle exactly: the whole query in
a few array operations. When each group's aggregated masks have stored (or prepared) CHIs
that bound every CP aggregate tightly (an IoU over the full mask with prepared intersect and
union CHIs, say), the values are known for all groups at once, so HAVING, ORDER BY and
LIMIT are worked out over every group in NumPy instead of the general path's bounds,
refinement and top-k machinery, and only the chosen groups are projected.

Whenever a precondition fails, ``exact_groups`` answers None and the general path runs: an
aggregate that is not CP over an aggregated mask, a group without a stored entry or with
loose bounds, several or non-integer grouping keys (ties are broken by the key), an
expression this evaluator does not cover (columns other than an integer key, NULL or text
literals, IS NULL, aggregates), integers beyond 2**53 (float64 would round them) and values
that are not finite. NULL from a zero divisor is handled as the general path does: NULL
fails HAVING and sorts last in both directions."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...lang import ast
from ...plan.operators import Project
from ...plan.physical import GroupMerge, PhysicalPlan
from ...store.agg_cache import AggregateCache
from ...store.arrow_compute import take
from ...store.numpy_arrow import array_numpy, numpy_array
from ..exact import evaluate
from ..stats import StatsRecords
from .batch import GroupBatch

# float64 holds every integer up to this exactly: beyond, the general path's int64 differs.
_EXACT_INT = float(2 ** 53)
# Groups whose stored CHIs leave a count open that are counted from their pixels (or 1% of
# the groups); more, and the general path (which may not need their exact values) runs.
_LOOSE_GROUPS = 8

_COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge}


class _Fallback(Exception):
    """The expression or its values are outside what this path answers exactly."""


class _Number:
    """Numeric values of every group: float64 ``v`` (0 where NULL), ``null`` per group, and
    whether the general path would hold them as integers (``integral``)."""

    def __init__(self, v: np.ndarray, null: np.ndarray, integral: bool, nulls: bool = True):
        if nulls:
            v = np.where(null, 0.0, v)
        # One reduction: NaN (from inf - inf, say) makes the largest magnitude NaN.
        top = float(np.abs(v).max()) if len(v) else 0.0
        if not top <= (_EXACT_INT if integral else np.inf):
            raise _Fallback
        self.v, self.null, self.integral = v, null, integral


class _Truth:
    """A predicate's value per group: ``true`` and ``null`` (SQL's three values)."""

    def __init__(self, true: np.ndarray, null: np.ndarray):
        self.true, self.null = true & ~null, null


class _Evaluator:
    def __init__(self, rows: pa.Table, aggregates: tuple[ast.Expr, ...], counts: np.ndarray):
        self.rows = rows
        self.aggregates = aggregates
        self.counts = counts.astype(np.float64)
        self.n = len(counts)
        self.none = np.zeros(self.n, bool)
        self._numbers: dict[int, tuple[ast.Expr, _Number]] = {}

    def number(self, e: ast.Expr) -> _Number:
        """The values of ``e``; an expression met again (ORDER BY and the output, say) is
        evaluated once."""
        hit = self._numbers.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        x = self._number(e)
        self._numbers[id(e)] = (e, x)
        return x

    def _number(self, e: ast.Expr) -> _Number:
        if isinstance(e, ast.CP):
            return _Number(self.counts[:, self.aggregates.index(e)], self.none, True, False)
        if isinstance(e, ast.Literal):
            if type(e.value) not in (int, float):     # NULL, text, booleans: not here
                raise _Fallback
            value = float(e.value)                    # type: ignore[arg-type]
            if abs(value) > _EXACT_INT:
                raise _Fallback
            return _Number(np.full(self.n, value), self.none, type(e.value) is int)
        if isinstance(e, ast.Column):
            return self._column(e.name)
        if isinstance(e, ast.Neg):
            x = self.number(e.operand)
            return _Number(-x.v, x.null, x.integral)
        if isinstance(e, ast.BinOp):
            left, right = self.number(e.left), self.number(e.right)
            null = left.null | right.null
            if e.op == "/":             # float division; a zero divisor gives NULL
                null = null | (right.v == 0)
                return _Number(left.v / np.where(null, 1.0, right.v), null, False)
            ops = {"+": np.add, "-": np.subtract, "*": np.multiply}
            if e.op not in ops:
                raise _Fallback
            return _Number(ops[e.op](left.v, right.v), null, left.integral and right.integral)
        raise _Fallback

    def _column(self, name: str) -> _Number:
        if name not in self.rows.column_names:
            raise _Fallback
        col = self.rows.column(name)
        if not pa.types.is_integer(col.type) or col.null_count:
            raise _Fallback
        return _Number(np.asarray(array_numpy(col), np.float64), self.none, True)

    def truth(self, e: ast.Expr) -> _Truth:
        if isinstance(e, ast.Compare):
            left, right = self.number(e.left), self.number(e.right)
            return _Truth(_COMPARE[e.op](left.v, right.v), left.null | right.null)
        if isinstance(e, ast.Not):
            x = self.truth(e.operand)
            return _Truth(~x.true, x.null)
        if isinstance(e, (ast.And, ast.Or)):
            items = [self.truth(x) for x in e.items]
            if isinstance(e, ast.And):
                false = np.logical_or.reduce([~x.true & ~x.null for x in items])
                null = ~false & np.logical_or.reduce([x.null for x in items])
                return _Truth(~false & ~null, null)
            true = np.logical_or.reduce([x.true for x in items])
            null = ~true & np.logical_or.reduce([x.null for x in items])
            return _Truth(true, null)
        raise _Fallback


def _order(ev: _Evaluator, idx: np.ndarray, order_by: tuple[ast.OrderItem, ...]
           ) -> np.ndarray:
    """``idx`` in ORDER BY order, NULLs last in both directions, ties by group index (the
    key, ascending)."""
    keys: list[np.ndarray] = [idx]
    for item in reversed(order_by):
        x = ev.number(item.expr)
        v, null = x.v[idx], x.null[idx]
        keys.append(-v if item.descending else v)     # NULL's v is 0: NULLs come after
        if null.any():
            keys.append(null)
    ordered: np.ndarray = idx[np.lexsort(keys)]
    return ordered


def _key_ordered(rows: pa.Table, tie_columns: tuple[str, ...]) -> bool:
    """Whether group order is the tie order: one integer key without NULLs, ascending."""
    if len(tie_columns) != 1:
        return False
    col = rows.column(tie_columns[0])
    if not pa.types.is_integer(col.type) or col.null_count:
        return False
    values = array_numpy(col)
    return bool((values[1:] > values[:-1]).all())


def _exact_counts(batch: GroupBatch, counts: np.ndarray) -> bool:
    """Every group's aggregates into ``counts`` from the stored CHIs, or False if a group
    has no entry or too many groups' bounds are loose."""
    groups, cache, aggregates = batch.groups, batch.cache, batch.aggregates
    assert cache is not None
    n = len(groups)
    boxes: dict[ast.Roi, np.ndarray] = {}
    loose: list[tuple[int, np.ndarray, np.ndarray]] = []
    for a, cp in enumerate(aggregates):
        assert isinstance(cp, ast.CP)
        assert cp.mask.aggregate is not None
        term = batch.cuts[cp]
        located = batch.keys.located(cache, cp.mask.aggregate)
        if not located.found.all():
            return False
        box = boxes.get(term.roi)
        if box is None:
            box = boxes[term.roi] = groups.boxes(term.roi, np.arange(n))
        lo, hi = cache.located_bounds(located, box, term.lo, term.hi)
        counts[:, a] = lo
        open_ = np.flatnonzero(lo != hi)
        if len(open_):
            loose.append((a, open_, box))
    if not loose:
        return True
    # A few groups' CHIs may leave a count open (pixels on a bin edge that is also a cut):
    # those are counted from their pixels, the general path's way, and the counts kept
    # with the cache for the next queries.
    todo = np.unique(np.concatenate([g for _, g, _ in loose]))
    if len(todo) > max(_LOOSE_GROUPS, n // 100):
        return False
    missing: list[tuple[int, int, str, tuple[int, ...]]] = []
    for a, open_, box in loose:
        cp = aggregates[a]
        assert isinstance(cp, ast.CP)
        assert cp.mask.aggregate is not None
        term = batch.cuts[cp]
        for g in open_.tolist():
            key, at = batch.keys.entry(cp.mask.aggregate, g), tuple(box[g].tolist())
            known = cache.exact_count(key, at, term.lo, term.hi)
            if known is None:
                missing.append((a, g, key, at))
            else:
                counts[g, a] = known
    if missing:
        which = np.unique(np.array([g for _, g, _, _ in missing], np.int64))
        # Their CHIs are stored already: none is built for them (``coarse_pending``).
        pending, batch.coarse_pending = batch.coarse_pending, True
        try:
            batch.resolve(which, list(range(len(aggregates))))
        finally:
            batch.coarse_pending = pending
        for a, g, key, at in missing:
            cp = aggregates[a]
            assert isinstance(cp, ast.CP)
            term = batch.cuts[cp]
            counts[g, a] = int(batch.state.exact[g, a])
            cache.remember_count(key, at, term.lo, term.hi, int(counts[g, a]))
    return True


def _aggregates_fit(aggregates: tuple[ast.Expr, ...]) -> bool:
    return bool(aggregates) and all(isinstance(a, ast.CP) and a.mask.aggregate is not None
                                    for a in aggregates)


def exact_groups(plan: PhysicalPlan, batch: GroupBatch, records: StatsRecords
                 ) -> pa.Table | None:
    """The query's answer when the stored CHIs make every group's aggregates exact (see the
    module's note), else None (nothing is changed that the general path relies on). The
    groups' exact counts are remembered with the cache (``remembered``)."""
    m = plan.merge
    assert isinstance(m, GroupMerge)
    groups, cache, aggregates = batch.groups, batch.cache, batch.aggregates
    n = len(groups)
    if cache is None or not n or groups.shapes is None or not _aggregates_fit(aggregates) \
            or cache.empty():
        return None
    if not (groups.member_rows.sizes(np.arange(n)) > 0).all() \
            or not _key_ordered(batch.rows, batch.tie_columns):
        return None
    counts = np.zeros((n, len(aggregates)), np.int64)
    with records.timed(m.bounds):
        if not _exact_counts(batch, counts):
            return None
    stats = batch.aggregator.stats
    key = _memo_key(plan, batch.groups.members.rows)
    if key is not None:
        cache.remember_groups(key, _Remembered(batch.rows, counts, stats.stored,
                                               stats.prepared))
    return _answer(m, batch.rows, counts, batch, records)


@dataclass(frozen=True)
class _Remembered:
    """What ``exact_groups`` worked out for some member rows: the groups' key table and
    their aggregates' exact counts, and how many had stored and prepared entries."""

    rows: pa.Table
    counts: np.ndarray
    stored: int
    prepared: int


def _memo_key(plan: PhysicalPlan, members: pa.Table) -> tuple[object, ...] | None:
    """The member rows (key values and mask ids, in order) and the aggregates' kinds,
    regions and cuts: a mask's pixels never change and its id is never reused, so these
    determine the groups and their exact counts."""
    q = plan.query
    m = plan.merge
    assert isinstance(m, GroupMerge)
    if len(q.group_by) != 1 or not _aggregates_fit(m.bounds.aggregates):
        return None
    name = q.group_by[0].name
    key_col, ids = members.column(name), members.column("mask_id")
    if not pa.types.is_integer(key_col.type) or key_col.null_count:
        return None
    terms = []
    for cp in m.bounds.aggregates:
        assert isinstance(cp, ast.CP)
        term = q.group_cuts[cp]
        roi = (term.roi.x0, term.roi.y0, term.roi.x1, term.roi.y1) \
            if isinstance(term.roi, ast.BoxRoi) else "full"
        terms.append((cp.mask.aggregate, roi, term.lo, term.hi))
    return (name, str(key_col.type), array_numpy(key_col).tobytes(),
            array_numpy(ids).tobytes(), tuple(terms))


def remembered(plan: PhysicalPlan, members: pa.Table, cache: AggregateCache | None,
               records: StatsRecords) -> pa.Table | None:
    """The answer from what ``exact_groups`` remembered for the same member rows and
    aggregates (a repeated query, or another over the same prepared aggregates), or None."""
    if cache is None or cache.empty():    # nothing stored: nothing was remembered
        return None
    key = _memo_key(plan, members)
    hit = cache.remembered_groups(key) if key is not None else None
    if not isinstance(hit, _Remembered):
        return None
    m = plan.merge
    assert isinstance(m, GroupMerge)
    with records.timed(m.aggregate) as rec:
        rec.rows += members.num_rows
        rec.groups += hit.rows.num_rows
    if m.mask_aggregation is not None:
        stats = records.of(m.mask_aggregation)
        stats.stored = max(stats.stored, hit.stored)
        stats.prepared = max(stats.prepared, hit.prepared)
    return _answer(m, hit.rows, hit.counts, None, records)


def _answer(m: GroupMerge, rows: pa.Table, counts: np.ndarray, batch: GroupBatch | None,
            records: StatsRecords) -> pa.Table | None:
    """HAVING, ORDER BY, LIMIT and the projection over every group's exact ``counts``."""
    n = rows.num_rows
    ev = _Evaluator(rows, m.bounds.aggregates, counts)
    try:
        keep = ev.truth(m.filter.predicate).true if m.filter is not None else np.ones(n, bool)
        candidates = np.flatnonzero(keep)
        order_by = m.select.order_by
        limit = getattr(m.select, "k", None)
        if limit is None:
            limit = getattr(m.select, "limit", None)
        chosen = _order(ev, candidates, order_by) if order_by else candidates
        if limit is not None:
            chosen = chosen[:limit]
        with records.timed(m.project) as rec:
            table = _project(ev, m.project, rows, batch, chosen, counts)
            rec.rows += table.num_rows
    except _Fallback:
        return None
    if m.filter is not None:
        with records.timed(m.filter) as rec:
            rec.seen += n
            rec.accepted += len(candidates)
            rec.rejected += n - len(candidates)
    with records.timed(m.select) as rec:
        rec.candidates += len(candidates)
        rec.chosen += len(chosen)
    return table


def _project(ev: _Evaluator, op: Project, rows: pa.Table, batch: GroupBatch | None,
             chosen: np.ndarray, counts: np.ndarray) -> pa.Table:
    """The output columns of the groups ``chosen``: key columns taken, numeric expressions
    over CP aggregates from the evaluator (int64 where the general path keeps integers,
    float64 with NULLs otherwise), anything else by the general evaluation (which needs
    ``batch``: without, _Fallback)."""
    arrays: list[pa.Array] = []
    rest: list[int] = []
    idx = numpy_array(np.asarray(chosen, np.int64))
    for i, e in enumerate(op.outputs):
        if isinstance(e, ast.Column):
            arrays.append(take(rows.column(e.name), idx).combine_chunks())
            continue
        try:
            if not _has_term(e) or not len(chosen):
                raise _Fallback     # constants, and no rows (types as the general path's)
            x = ev.number(e)
        except _Fallback:
            arrays.append(pa.nulls(0))
            rest.append(i)
            continue
        if x.integral:
            arrays.append(numpy_array(x.v[chosen].astype(np.int64), pa.int64()))
        else:
            arrays.append(numpy_array(np.asarray(x.v[chosen], np.float64), pa.float64(),
                                      mask=x.null[chosen]))
    if rest:
        if batch is None:
            raise _Fallback
        s = batch.state
        s.lower[chosen], s.upper[chosen] = counts[chosen], counts[chosen]
        s.exact[chosen] = counts[chosen].astype(object)
        s.known[chosen] = True
        taken = batch.take(chosen)
        for i in rest:
            arrays[i] = evaluate(op.outputs[i], taken)
    return pa.Table.from_arrays(arrays, names=list(op.names))


def _has_term(e: ast.Expr) -> bool:
    """Whether ``e`` holds a CP aggregate (its value a column, not a repeated constant)."""
    if isinstance(e, ast.CP):
        return True
    if isinstance(e, ast.Neg):
        return _has_term(e.operand)
    if isinstance(e, ast.BinOp):
        return _has_term(e.left) or _has_term(e.right)
    return False
