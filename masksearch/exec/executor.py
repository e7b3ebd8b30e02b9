"""Run a logical plan: metadata filter, bound filter, verification, top-k, projection."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..lang import ast
from ..plan.bounds import interval, outcomes
from ..plan.logical import Plan
from ..result import QueryStats, Result
from ..store.store import Store
from .batch import Batch
from .exact import evaluate

FIRST_BATCH = 64
MAX_BATCH = 4096


def _conj(items: tuple):
    return items[0] if len(items) == 1 else ast.And(items)


def _truth(value: pa.Array) -> np.ndarray:
    if pa.types.is_null(value.type):
        return np.zeros(len(value), bool)
    return value.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def execute(plan: Plan, store: Store, use_index: bool = True) -> Result:
    start = time.perf_counter()
    table = store.table()
    stats = QueryStats(masks_total=table.num_rows, used_index=use_index)
    q = plan.query
    if plan.meta_filter and table.num_rows:
        probe = Batch(table, store, q, use_index)
        keep = _truth(evaluate(_conj(plan.meta_filter), probe))
        table = table.filter(pa.array(keep))
    stats.rejected_by_metadata = stats.masks_total - table.num_rows
    batch = Batch(table, store, q, use_index)
    for t in range(len(q.terms)):
        batch.bound_term(t)   # once here; sub-batches share these bounds
    n = table.num_rows
    undecided = np.zeros(n, bool)
    if plan.cp_filter and n:
        where = _conj(plan.cp_filter)
        o = outcomes(where, batch)
        keep = o.may_true
        undecided = keep & ~o.must_true
        if undecided.any():
            # Second look at the undecided rows with cell-by-cell bounds.
            idx = np.flatnonzero(undecided)
            batch.refine(idx)
            o2 = outcomes(where, batch.take(idx))
            keep[idx] = o2.may_true
            undecided[idx] = o2.may_true & ~o2.must_true
        stats.rejected_by_index = int((~keep).sum())
        stats.accepted_by_index = int((keep & ~undecided).sum())
        candidates = np.flatnonzero(keep)
    else:
        candidates = np.arange(n)
    selector = _Selector(plan, batch, undecided)
    if plan.limit == 0:
        chosen = np.zeros(0, np.int64)
    elif plan.strategy == "bounded_topk":
        chosen = selector.bounded_topk(candidates)
    elif plan.strategy == "ordered_scan":
        chosen = selector.ordered_scan(candidates)
    else:
        chosen = selector.full(candidates)
    out = batch.take(chosen)
    columns = [evaluate(e, out) for e in q.outputs]
    result = pa.Table.from_arrays(columns, names=list(q.names))
    stats.verified = batch.verified
    stats.bytes_read = batch.bytes_read
    stats.seconds = time.perf_counter() - start
    return Result(result, stats, plan.describe())


class _Selector:
    """Chooses the output rows (indices into the batch, in output order)."""

    def __init__(self, plan: Plan, batch: Batch, undecided: np.ndarray):
        self.plan = plan
        self.batch = batch
        self.undecided = undecided
        self.all_terms = list(range(len(plan.query.terms)))
        self.output_terms = sorted(plan.output_terms)

    def qualify(self, idx: np.ndarray) -> np.ndarray:
        """The rows of ``idx`` that satisfy WHERE, with every output CP value made exact."""
        if not len(idx):
            return idx
        where_terms = self.all_terms if self.undecided[idx].any() else []
        self.batch.resolve(idx[self.undecided[idx]], where_terms)
        self.batch.resolve(idx, self.output_terms)
        check = idx[self.undecided[idx]]
        if len(check):
            ok = _truth(evaluate(_conj(self.plan.cp_filter), self.batch.take(check)))
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
        arrays.append(sub.rows.column("mask_id"))
        keys.append(("mask_id", "ascending", "at_end"))
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

    def bounded_topk(self, candidates: np.ndarray) -> np.ndarray:
        """Verify in order of the best value each candidate could reach; stop when the k-th
        exact value beats every unread candidate's bound."""
        k = self.plan.limit
        first = self.plan.order_by[0]
        sub = self.batch.take(candidates)
        bounds = interval(first.expr, sub)
        desc = first.descending
        best = bounds.hi if desc else bounds.lo
        mask_ids = sub.rows.column("mask_id").to_numpy()
        # Candidates that can only be NULL sort after all others.
        order = np.lexsort((mask_ids, -best if desc else best, bounds.must_null))
        ordered = candidates[order]
        best, never_value = best[order], bounds.must_null[order]
        top = np.zeros(0, np.int64)
        kth = None
        pos, size = 0, max(k, FIRST_BATCH)
        while pos < len(ordered):
            part = ordered[pos:pos + size]
            pos += size
            size = min(size * 2, MAX_BATCH)
            if kth is not None:
                # Cell-by-cell bounds may show that some of these cannot beat the k-th value.
                self.batch.refine(part)
                fine = interval(first.expr, self.batch.take(part))
                reach = fine.hi if desc else fine.lo
                part = part[~fine.must_null & ((reach >= kth) if desc else (reach <= kth))]
            top = self.sort(np.concatenate([top, self.qualify(part)]))[:k]
            if len(top) < k or pos >= len(ordered):
                continue
            kth = evaluate(first.expr, self.batch.take(top[-1:]))[0].as_py()
            if kth is None:
                continue  # a NULL k-th value can still be displaced by any row
            nxt = best[pos]
            if never_value[pos] or (nxt < kth if desc else nxt > kth):
                break
        return top
