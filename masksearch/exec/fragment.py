"""Running a plan's fragment on one shard: the per-segment work, which needs nothing from
other shards."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..plan.operators import BoundOrderTopK, Operator
from ..plan.physical import PhysicalPlan
from ..store.arrow_compute import filter_rows
from ..store.numpy_arrow import numpy_array
from .context import ExecContext
from .exact import evaluate, project
from .filtering import filter_units, truth
from .rows import RowBatch, RowTerms
from .selection import Chooser, select_units, sort_keys, top_k_reach
from .stats import StatsRecords


@dataclass
class FragmentOutput:
    """A shard's result. Rows: the output columns of its chosen rows (``table``) and their
    sort keys (``keys``). Groups: its member rows with what is known of them."""

    records: StatsRecords
    table: pa.Table | None = None
    keys: pa.Table | None = None
    members: RowBatch | None = None
    worker: str | None = None      # where it ran, when not here (a cluster's worker)
    seconds: float = 0.0           # how long it ran there
    skipped: bool = False          # a top-k's floor ruled the shard out (bounds only)


def row_terms(plan: PhysicalPlan) -> RowTerms:
    return RowTerms(plan.query.terms, plan.query.term_of)


def run_fragment(plan: PhysicalPlan, rows: pa.Table, ctx: ExecContext,
                 floor: float | None = None, memo: dict[Hashable, object] | None = None) -> FragmentOutput:
    """Scan -> MetaFilter -> BoundFilter -> (Select -> Project | PartialGroupBounds) over
    the shard whose metadata rows are ``rows``. ``floor``: for a top-k split over shards,
    a value the k-th result is known to reach (from the other shards). ``memo``: kept
    with the snapshot for this shard's rows (regions worked out once, not per query)."""
    batch, candidates, undecided = _bounded(plan, rows, ctx, memo)
    f, records = plan.fragment, ctx.records
    condition = f.bound_filter.predicate if f.bound_filter is not None else None
    if f.members is not None:
        with records.timed(f.members) as rec:
            members = _members(plan, batch, candidates, undecided)
            rec.rows += members.rows.num_rows
        return FragmentOutput(records, members=members)
    assert f.select is not None
    assert f.project is not None
    chooser = Chooser(batch, condition, undecided, list(range(len(batch.terms.cuts))),
                      list(plan.output_terms), ctx.settings, floor)
    chosen = select_units(f.select, chooser, candidates, records)
    with records.timed(f.project) as rec:
        out = batch.take(chosen)
        table = project(f.project, out)
        keys, _ = sort_keys(out, f.select.order_by)
        rec.rows += table.num_rows
    return FragmentOutput(records, table=table, keys=keys)


@dataclass
class ShardReach:
    """What the index says of a shard for a top-k split over shards: the best value any of
    its candidates can reach (None: none can have a value) and the worst-case values of up
    to k candidates sure to qualify with a value, best first."""

    records: StatsRecords
    reach: float | None
    sure: np.ndarray
    worker: str | None = None
    seconds: float = 0.0


def reach_of_shard(plan: PhysicalPlan, rows: pa.Table, ctx: ExecContext) -> ShardReach:
    """Scan -> MetaFilter -> BoundFilter of a top-k's shard, and what its bounds promise
    (``ShardReach``): no pixel is read."""
    select = plan.fragment.select
    assert isinstance(select, BoundOrderTopK)
    batch, candidates, undecided = _bounded(plan, rows, ctx)
    chooser = Chooser(batch, None, undecided, [], [], ctx.settings)
    reach, sure = top_k_reach(select, chooser, candidates)
    return ShardReach(ctx.records, reach, sure)


def _bounded(plan: PhysicalPlan, rows: pa.Table, ctx: ExecContext, memo: dict[Hashable, object] | None = None
             ) -> tuple[RowBatch, np.ndarray, np.ndarray]:
    """The shard's rows after Scan and MetaFilter, its candidates after BoundFilter, and
    which of them bounds leave undecided."""
    f, records = plan.fragment, ctx.records
    with records.timed(f.scan) as scanned:
        rows = rows.select([c for c in rows.column_names if c in f.scan.columns])
        scanned.masks += rows.num_rows
    terms = row_terms(plan)
    if f.meta_filter is not None and rows.num_rows:
        with records.timed(f.meta_filter) as rec:
            keep = truth(evaluate(f.meta_filter.predicate, RowBatch(rows, terms, ctx)))
            rows = filter_rows(rows, numpy_array(np.asarray(keep, np.bool_)))
            rec.seen += len(keep)
            rec.passed += rows.num_rows
            memo = None                 # other rows than the shard's
    batch = RowBatch(rows, terms, ctx, regions_memo=memo)
    candidates, undecided = _bound(plan, batch, ctx)
    return batch, candidates, undecided


def _bound(plan: PhysicalPlan, batch: RowBatch, ctx: ExecContext
           ) -> tuple[np.ndarray, np.ndarray]:
    """Coarse bounds of every term for every row (once here: taken batches share them),
    then BoundFilter: the candidate rows, and which of them bounds leave undecided."""
    f = plan.fragment
    n = batch.num_rows
    candidates, undecided = np.arange(n), np.zeros(n, bool)
    op: Operator[Any] | None = f.bound_filter or f.verify
    if op is None:
        return candidates, undecided
    with ctx.records.timed(op):
        for t in range(len(batch.terms.cuts)):
            batch.bound_term(t)
    if f.bound_filter is None or not n:
        return candidates, undecided
    return filter_units(f.bound_filter, batch, ctx.records, ctx.settings)


def _members(plan: PhysicalPlan, batch: RowBatch, candidates: np.ndarray,
             undecided: np.ndarray) -> RowBatch:
    """The rows that satisfy WHERE exactly (group membership must be exact: the rows bounds
    could not decide are verified), with what is known of them."""
    check = candidates[undecided[candidates]]
    if len(check):
        assert plan.fragment.bound_filter is not None
        batch.resolve(check, range(len(batch.terms.cuts)))
        ok = truth(evaluate(plan.fragment.bound_filter.predicate, batch.take(check)))
        candidates = candidates[~np.isin(candidates, check[~ok])]
    if len(candidates) == batch.num_rows:
        return batch        # every row (candidates ascend, without repeats): nothing to take
    return batch.take(candidates)
