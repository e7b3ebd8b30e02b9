"""Running a plan's fragment on one shard: the per-segment work, which needs nothing from
other shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..plan.operators import Operator
from ..plan.physical import PhysicalPlan
from .context import ExecContext
from .exact import evaluate, project
from .filtering import filter_units, truth
from .rows import RowBatch, RowTerms
from .selection import Chooser, select_units, sort_keys
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


def row_terms(plan: PhysicalPlan) -> RowTerms:
    return RowTerms(plan.query.terms, plan.query.term_of)


def run_fragment(plan: PhysicalPlan, rows: pa.Table, ctx: ExecContext) -> FragmentOutput:
    """Scan -> MetaFilter -> BoundFilter -> (Select -> Project | PartialGroupBounds) over
    the shard whose metadata rows are ``rows``."""
    f, records = plan.fragment, ctx.records
    with records.timed(f.scan) as scanned:
        rows = rows.select([c for c in rows.column_names if c in f.scan.columns])
        scanned.masks += rows.num_rows
    terms = row_terms(plan)
    if f.meta_filter is not None and rows.num_rows:
        with records.timed(f.meta_filter) as rec:
            keep = truth(evaluate(f.meta_filter.predicate, RowBatch(rows, terms, ctx)))
            rows = rows.filter(pa.array(keep))
            rec.seen += len(keep)
            rec.passed += rows.num_rows
    batch = RowBatch(rows, terms, ctx)
    candidates, undecided = _bound(plan, batch, ctx)
    condition = f.bound_filter.predicate if f.bound_filter is not None else None
    if f.members is not None:
        with records.timed(f.members) as rec:
            members = _members(plan, batch, candidates, undecided)
            rec.rows += members.rows.num_rows
        return FragmentOutput(records, members=members)
    assert f.select is not None
    assert f.project is not None
    chooser = Chooser(batch, condition, undecided, list(range(len(terms.cuts))),
                      list(plan.output_terms), ctx.settings)
    chosen = select_units(f.select, chooser, candidates, records)
    with records.timed(f.project) as rec:
        out = batch.take(chosen)
        table = project(f.project, out)
        keys, _ = sort_keys(out, f.select.order_by)
        rec.rows += table.num_rows
    return FragmentOutput(records, table=table, keys=keys)


def _bound(plan: PhysicalPlan, batch: RowBatch, ctx: ExecContext
           ) -> tuple[np.ndarray, np.ndarray]:
    """Coarse bounds of every term for every row (once here: taken batches share them),
    then BoundFilter: the candidate rows, and which of them bounds leave undecided."""
    f = plan.fragment
    n = batch.rows.num_rows
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
    return batch.take(candidates)
