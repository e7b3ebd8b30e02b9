"""The merge: the one step that sees every shard's output. Rows: the shards' results in one
order. Groups: formed from every shard's members, bounded, filtered, chosen, projected."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ..plan.operators import AggregationStats, BoundOrderTopK, MergeRows
from ..plan.physical import GroupMerge, PhysicalPlan
from ..store.agg_cache import AggregateCache
from ..store.arrow_compute import sort_indices, take
from .context import ExecContext
from .exact import project
from .filtering import filter_units
from .fragment import FragmentOutput
from .groups.batch import GroupBatch
from .groups.exact_path import exact_groups, remembered
from .groups.formation import Groups, form_groups
from .groups.integer_keys import integer_groups
from .groups.verify import MaskAggregator
from .rows import RowBatch
from .selection import Chooser, select_units, sort_spec
from .stats import StatsRecords


def merge_rows(op: MergeRows, outs: Sequence[FragmentOutput], records: StatsRecords
               ) -> pa.Table:
    """The shards' rows, sorted by the order keys (ties by mask_id) and cut to LIMIT; one
    shard's rows are final already."""
    with records.timed(op) as rec:
        rec.shards += len(outs)
        rec.skipped += sum(o.skipped for o in outs)
        tables = [o.table for o in outs if o.table is not None]
        result = tables[0]
        if len(tables) > 1:
            table = pa.concat_tables(tables)
            keys = pa.concat_tables([o.keys for o in outs if o.keys is not None])
            order = sort_indices(keys, sort_spec(op.order_by, ("mask_id",)))
            if op.limit is not None:
                order = order[:op.limit]
            result = take(table, order)
        rec.rows += result.num_rows
    return result


def group_batch(plan: PhysicalPlan, members: RowBatch, ctx: ExecContext,
                cache: AggregateCache | None) -> GroupBatch:
    """GroupAggregate: the groups of ``members`` by the plan's keys, as units (no bounds
    yet); ``cache`` (used with the index on) holds aggregated masks' CHIs."""
    m = plan.merge
    assert isinstance(m, GroupMerge)
    q = plan.query
    keys, member_rows = integer_groups(members, m.aggregate.keys) or \
        form_groups(members, m.aggregate.keys)
    groups = Groups(keys, members, member_rows)
    if m.mask_aggregation is not None:
        groups = groups.with_shapes()
    cache = cache if ctx.use_index else None
    stats = ctx.records.of(m.mask_aggregation) if m.mask_aggregation else AggregationStats()
    room = max(ctx.settings.cached_groups, len(groups) // 50)
    # A connection that saves nothing (read-only) still reads the cache, but builds no CHI.
    aggregator = MaskAggregator(ctx, cache if ctx.collector.persist else None, stats, room)
    return GroupBatch(groups, m.bounds.aggregates, q.group_cuts,
                      tuple(k.name for k in q.group_by), aggregator, cache, ctx.settings)


def merge_groups(plan: PhysicalPlan, outs: Sequence[FragmentOutput], ctx: ExecContext,
                 cache: AggregateCache | None) -> pa.Table:
    """GroupAggregate -> GroupBounds -> GroupFilter -> Select (MaskAggregation as it needs
    exact values) -> Project, over every shard's members."""
    m = plan.merge
    assert isinstance(m, GroupMerge)
    records, settings = ctx.records, ctx.settings
    members = RowBatch.concat([o.members for o in outs if o.members is not None], ctx)
    fast = ctx.use_index and settings.exact_groups
    if fast:    # the same member rows' groups, their counts exact before: array operations
        table = remembered(plan, members.rows, cache, records)
        if table is not None:
            return table
    with records.timed(m.aggregate) as rec:
        batch = group_batch(plan, members, ctx, cache)
        rec.rows += members.rows.num_rows
        rec.groups += len(batch.groups)
    groups = batch.groups
    # Every group's aggregates exact from stored CHIs: the whole query in array operations.
    if fast:
        table = exact_groups(plan, batch, records)
        if table is not None:
            return table
    # A top-k over groups first tries the cheap bounds (see selection.bound_order).
    probe = isinstance(m.select, BoundOrderTopK) and m.filter is None and ctx.use_index
    with records.timed(m.bounds):
        batch.bound_all(trivial=probe)
        batch.coarse_pending = probe
    candidates, undecided = np.arange(len(groups)), np.zeros(len(groups), bool)
    if m.filter is not None and len(groups):
        candidates, undecided = filter_units(m.filter, batch, records, settings,
                                             refine=ctx.use_index)
    condition = m.filter.predicate if m.filter is not None else None
    chooser = Chooser(batch, condition, undecided, list(range(len(m.bounds.aggregates))),
                      list(plan.output_terms), settings)
    chosen = select_units(m.select, chooser, candidates, records, probe=settings.probe_groups)
    with records.timed(m.project) as rec:
        table = project(m.project, batch.take(chosen))
        rec.rows += table.num_rows
    return table
