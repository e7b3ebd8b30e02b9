"""Run a logical plan: metadata filter, bound filter, verification, top-k, projection."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import QueryError
from ..lang import ast
from ..plan.logical import Plan
from ..result import QueryStats, Result
from ..store.store import Store
from .batch import Batch, Work
from .control import QueryControl, running
from .exact import evaluate
from .groups import GroupBatch, form_groups
from .intervals import Interval, interval, outcomes

FIRST_BATCH = 16
MAX_BATCH = 4096
# Groups a top-k reads with trivial bounds before it asks the index for every group's: its
# first three parts (16 + 32 + 64), what the brute force reads before it stops on the suite's
# IoU top-10 ASC; if that does not settle it, ~10 ms spent on the way to a slower query.
PROBE_UNITS = 112


def _conj(items: tuple):
    return items[0] if len(items) == 1 else ast.And(items)


def _truth(value: pa.Array) -> np.ndarray:
    if pa.types.is_null(value.type):
        return np.zeros(len(value), bool)
    return value.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


# Cell-by-cell bounds cost a fraction of reading a unit's pixels (a few percent for a
# mask, about a third for a group's aggregated masks); when they decide less than this share
# of the units they are tried on, the rest go straight to verification.
REFINE_PAYS = 0.25
REFINE_SAMPLE = 256


def bound_filter(units, where, refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows (or groups) that may satisfy ``where``, and which of those bounds cannot decide.

    Undecided units get a second look with cell-by-cell bounds before they count as such,
    a sample first when they are many: if it decides too few, the others are not refined.
    """
    o = outcomes(where, units)
    keep = o.may_true
    undecided = keep & ~o.must_true
    todo = np.flatnonzero(undecided) if refine else np.zeros(0, np.int64)
    for idx in (todo[:REFINE_SAMPLE], todo[REFINE_SAMPLE:]):
        if not len(idx):
            break
        units.refine(idx)
        o2 = outcomes(where, units.take(idx))
        keep[idx] = o2.may_true
        undecided[idx] = o2.may_true & ~o2.must_true
        if undecided[idx].sum() > (1 - REFINE_PAYS) * len(idx):
            break
    return keep, undecided


class _Trace:
    """Per-operator statistics for EXPLAIN ANALYZE: counts, time and pixel work."""

    def __init__(self, work: Work):
        self.work = work
        self.ops: dict[str, dict] = {}

    @contextmanager
    def op(self, key: str):
        record: dict = {}
        before, start = self.work.snapshot(), time.perf_counter()
        yield record
        record["ms"] = (time.perf_counter() - start) * 1e3
        for name in ("verified", "bytes_read", "chis_built"):
            delta = getattr(self.work, name) - getattr(before, name)
            if delta:
                record[name] = delta
        self.ops[key] = record


def execute(plan: Plan, store: Store, use_index: bool = True,
            query_control: QueryControl | None = None, table: pa.Table | None = None) -> Result:
    """Run ``plan``; ``table`` replaces the store's metadata rows (a subset, or rows with
    extra columns the plan refers to), ``query_control`` lets the caller cancel or time it."""
    with running(query_control or QueryControl()):
        try:
            return _execute(plan, store, use_index, store.table() if table is None else table)
        except QueryError as e:
            if e.text is None and e.line is not None:   # located by the evaluator: show where
                raise QueryError(e.message, plan.query.text, e.line, e.column) from None
            raise


def _execute(plan: Plan, store: Store, use_index: bool, table: pa.Table) -> Result:
    start = time.perf_counter()
    if plan.columns:     # rows are taken again and again: carry only the columns read
        table = table.select([c for c in table.column_names if c in plan.columns])
    stats = QueryStats(masks_total=table.num_rows, used_index=use_index)
    q = plan.query
    work = Work()
    trace = _Trace(work)
    trace.ops["scan"] = {"masks": table.num_rows}
    if plan.meta_filter and table.num_rows:
        with trace.op("meta") as rec:
            probe = Batch(table, store, q, use_index)
            keep = _truth(evaluate(_conj(plan.meta_filter), probe))
            table = table.filter(pa.array(keep))
            rec.update(seen=len(keep), passed=table.num_rows)
    stats.rejected_by_metadata = stats.masks_total - table.num_rows
    batch = Batch(table, store, q, use_index)
    batch.work = work
    n = table.num_rows
    undecided = np.zeros(n, bool)
    candidates = np.arange(n)
    with trace.op("bound") as rec:
        for t in range(len(q.terms)):
            batch.bound_term(t)   # once here; sub-batches share these bounds
        if plan.cp_filter and n:
            keep, undecided = bound_filter(batch, _conj(plan.cp_filter))
            stats.rejected_by_index = int((~keep).sum())
            stats.accepted_by_index = int((keep & ~undecided).sum())
            candidates = np.flatnonzero(keep)
            rec.update(seen=n, accepted=stats.accepted_by_index,
                       rejected=stats.rejected_by_index, undecided=int(undecided.sum()))
    if plan.grouped:
        units, chosen = _select_groups(plan, batch, candidates, undecided, trace)
    else:
        with trace.op("select") as rec:
            selector = _Selector(plan, batch,
                                 _conj(plan.cp_filter) if plan.cp_filter else None,
                                 undecided, list(range(len(q.terms))))
            units, chosen = batch, selector.choose(candidates)
            rec.update(candidates=len(candidates), chosen=len(chosen))
    with trace.op("project") as rec:
        out = units.take(chosen)
        columns = [evaluate(e, out) for e in q.outputs]
        result = pa.Table.from_arrays(columns, names=list(q.names))
        rec.update(rows=result.num_rows)
    stats.verified = work.verified
    stats.bytes_read = work.bytes_read
    stats.chis_built = work.chis_built
    stats.seconds = time.perf_counter() - start
    stats.operators = trace.ops
    return Result(result, stats)


def _select_groups(plan: Plan, batch: Batch, candidates: np.ndarray, undecided: np.ndarray,
                   trace: _Trace):
    """Settle WHERE exactly for the candidate rows, form groups, then choose groups."""
    q = plan.query
    with trace.op("aggregate") as rec:
        check = candidates[undecided[candidates]]
        if len(check):
            # Group membership must be exact: verify the rows bounds could not decide.
            batch.resolve(check, list(range(len(q.terms))))
            ok = _truth(evaluate(_conj(plan.cp_filter), batch.take(check)))
            candidates = candidates[~np.isin(candidates, check[~ok])]
        members = batch.take(candidates)
        keys, member_rows = form_groups(members, plan.group_by)
        groups = GroupBatch(keys, member_rows, members, q)
        # A top-k over groups first tries the cheap bounds (see _Selector.bounded_topk).
        probe = plan.strategy == "bounded_topk" and plan.having is None and batch.use_index
        groups.bound_all(trivial=probe)
        groups.coarse_pending = probe
        rec.update(rows=len(candidates), groups=len(member_rows))
    g_undecided = np.zeros(len(member_rows), bool)
    g_candidates = np.arange(len(member_rows))
    if plan.having is not None and len(member_rows):
        with trace.op("having") as rec:
            keep, g_undecided = bound_filter(groups, plan.having, refine=batch.use_index)
            g_candidates = np.flatnonzero(keep)
            rec.update(seen=len(keep), accepted=int((keep & ~g_undecided).sum()),
                       rejected=int((~keep).sum()), undecided=int(g_undecided.sum()))
    with trace.op("select") as rec:
        selector = _Selector(plan, groups, plan.having, g_undecided,
                             list(range(len(q.group_terms))))
        chosen = selector.choose(g_candidates)
        rec.update(candidates=len(g_candidates), chosen=len(chosen))
    groups.save_aggregate_chis()
    return groups, chosen


class _Selector:
    """Chooses the output rows (indices into the batch, in output order)."""

    def __init__(self, plan: Plan, units, condition, undecided: np.ndarray,
                 all_terms: list[int]):
        self.plan = plan
        self.batch = units            # a Batch of rows or a GroupBatch
        self.condition = condition    # WHERE (rows) or HAVING (groups) part left to check
        self.undecided = undecided
        self.all_terms = all_terms
        self.output_terms = sorted(plan.output_terms)

    def choose(self, candidates: np.ndarray) -> np.ndarray:
        if self.plan.limit == 0:
            return np.zeros(0, np.int64)
        if self.plan.strategy == "bounded_topk":
            return self.bounded_topk(candidates)
        if self.plan.strategy == "ordered_scan":
            return self.ordered_scan(candidates)
        return self.full(candidates)

    def qualify(self, idx: np.ndarray) -> np.ndarray:
        """The rows of ``idx`` that satisfy WHERE, with every output CP value made exact."""
        if not len(idx):
            return idx
        where_terms = self.all_terms if self.undecided[idx].any() else []
        self.batch.resolve(idx[self.undecided[idx]], where_terms)
        self.batch.resolve(idx, self.output_terms)
        check = idx[self.undecided[idx]]
        if len(check):
            ok = _truth(evaluate(self.condition, self.batch.take(check)))
            idx = idx[~np.isin(idx, check[~ok])]
        return idx

    def sort(self, idx: np.ndarray) -> np.ndarray:
        """``idx`` in ORDER BY order, NULLs last, ties by mask_id."""
        if len(idx) <= 1:
            return idx
        sub = self.batch.take(idx)
        arrays, keys = [], []
        for i, item in enumerate(self.plan.order_by):
            arrays.append(evaluate(item.expr, sub))
            keys.append((f"k{i}", "descending" if item.descending else "ascending", "at_end"))
        for name in self.batch.tie_columns:
            arrays.append(sub.rows.column(name))
            keys.append((f"t_{name}", "ascending", "at_end"))
        names = [k[0] for k in keys]
        order = pc.sort_indices(pa.Table.from_arrays(arrays, names=names),
                                sort_keys=keys).to_numpy()
        return idx[order]

    def full(self, candidates: np.ndarray) -> np.ndarray:
        rows = self.sort(self.qualify(candidates))
        return rows if self.plan.limit is None else rows[:self.plan.limit]

    def ordered_scan(self, candidates: np.ndarray) -> np.ndarray:
        """Keys need no pixels: walk in key order and verify until LIMIT rows qualify."""
        k = self.plan.limit
        ordered = self.sort(candidates)
        chosen: list[np.ndarray] = []
        have, pos, size = 0, 0, max(k, FIRST_BATCH)
        while have < k and pos < len(ordered):
            part = self.qualify(ordered[pos:pos + size])
            chosen.append(part)
            have += len(part)
            pos += size
            size = min(size * 2, MAX_BATCH)
        rows = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
        return rows[:k]

    def _tie_ranks(self, idx: np.ndarray) -> np.ndarray | None:
        """Ranks of the tie-break key of ``idx`` when one key orders and one column breaks
        ties without NULLs; then a candidate that can at best tie the k-th value but has a
        larger tie key cannot enter the result."""
        cols = self.batch.tie_columns
        if len(self.plan.order_by) != 1 or len(cols) != 1:
            return None
        col = self.batch.rows.column(cols[0]).take(pa.array(idx, pa.int64()))
        if col.null_count:
            return None
        return np.unique(col.to_numpy(), return_inverse=True)[1].reshape(-1)

    def _kth_floor(self, candidates: np.ndarray, bounds: Interval, k: int,
                   desc: bool) -> float | None:
        """A value the k-th result is sure to reach (at least, for DESC; at most, for
        ASC): the k-th best worst-case value of the candidates that surely satisfy the
        condition and are never NULL or NaN. None if fewer than k such candidates."""
        sure = ~self.undecided[candidates] & ~bounds.may_null & ~bounds.nan()
        worst = (bounds.lo if desc else bounds.hi)[sure]
        if len(worst) < k:
            return None
        at = len(worst) - k if desc else k - 1
        return float(np.partition(worst, at)[at])

    def bounded_topk(self, candidates: np.ndarray) -> np.ndarray:
        """Verify in order of the best value each candidate could reach; stop when the k-th
        exact value beats every unread candidate's bound.

        Groups come with trivial bounds first: a few parts are read with them, unrefined
        (what the brute force does), and only if that cannot settle the result are the
        index's bounds of every group worked out. When the first groups in key order
        already hold the best value any group could have (an IoU of 0, say), the index is
        never asked."""
        if self.batch.coarse_pending:
            top, finished = self._topk(candidates, budget=PROBE_UNITS, refine=False)
            if finished:
                return top
            self.batch.bound_coarse()
        return self._topk(candidates)[0]

    def _topk(self, candidates: np.ndarray, budget: int | None = None,
              refine: bool = True) -> tuple[np.ndarray, bool]:
        """The top-k loop of ``bounded_topk``, with whether its result is final: with a
        ``budget``, no part starts once that many candidates have been looked at;
        ``refine=False`` reads the parts without refining their bounds first."""
        k = self.plan.limit
        first = self.plan.order_by[0]
        every = len(candidates) == self.batch.rows.num_rows    # then candidates == arange
        bounds = interval(first.expr, self.batch if every else self.batch.take(candidates))
        desc = first.descending
        best = bounds.hi if desc else bounds.lo
        floor = self._kth_floor(candidates, bounds, k, desc)
        if floor is not None:
            # At least k rows are sure to reach ``floor``: a row that cannot reach it cannot
            # be in the result. Usually this leaves a few hundred of many thousands.
            keep = ~bounds.must_null & ((best >= floor) if desc else (best <= floor))
            candidates, best = candidates[keep], best[keep]
            bounds = Interval(bounds.lo[keep], bounds.hi[keep], bounds.may_null[keep],
                              bounds.must_null[keep])
        ties = self._tie_ranks(candidates)
        tie_rank = ties if ties is not None else np.arange(len(candidates))
        # Candidates that can only be NULL sort after all others; then by best reachable
        # value, then by tie key.
        order = np.lexsort((tie_rank, -best if desc else best, bounds.must_null))
        ordered = candidates[order]
        best, never_value, tie_rank = best[order], bounds.must_null[order], tie_rank[order]
        rank_of = np.zeros(self.batch.rows.num_rows, np.int64)    # tie rank by row
        rank_of[ordered] = tie_rank
        top = np.zeros(0, np.int64)
        kth = kth_tie = None
        pos, size = 0, max(k, FIRST_BATCH)
        refining = refine
        while pos < len(ordered):
            if budget is not None and (pos >= budget or not np.isfinite(best[pos])):
                return top, False   # spent, or nothing to stop at: an unbounded best case
            part = ordered[pos:pos + size]
            pos += size
            size = min(size * 2, MAX_BATCH)
            if refining:
                # Cell-by-cell bounds may make values exact, or show that some of these
                # cannot beat the k-th value; they stop once they decide too few.
                self.batch.refine(part)
            if kth is not None:
                fine = interval(first.expr, self.batch.take(part))
                reach = fine.hi if desc else fine.lo
                beats = (reach > kth) if desc else (reach < kth)
                can_tie = reach == kth
                if ties is not None:
                    can_tie &= rank_of[part] < kth_tie
                before = len(part)
                part = part[~fine.must_null & (beats | can_tie)]
                exact = self.batch.known[np.ix_(part, self.output_terms)].all(axis=1).sum()
                refining = refining and before - len(part) + exact >= REFINE_PAYS * before
            top = self.sort(np.concatenate([top, self.qualify(part)]))[:k]
            if len(top) < k or pos >= len(ordered):
                continue
            kth = evaluate(first.expr, self.batch.take(top[-1:]))[0].as_py()
            if kth is None or kth != kth:
                kth = None
                continue  # a NULL or NaN k-th value can still be displaced by any row
            kth_tie = rank_of[top[-1]] if ties is not None else None
            nxt = best[pos]
            if never_value[pos] or (nxt < kth if desc else nxt > kth):
                break
            if ties is not None and nxt == kth and tie_rank[pos] > kth_tie:
                break
        return top, True
