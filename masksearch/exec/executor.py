"""Run a physical plan on a snapshot of the store: the fragment on every shard of segments,
then the merge; the CHIs built on the way are saved once, at the end (not at all for a
read-only connection)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Protocol

import pyarrow as pa

from ..errors import QueryError
from ..plan.operators import (
    BoundFilter,
    MaskAggregation,
    MetaFilter,
    Scan,
    Verify,
    VerifyStats,
)
from ..plan.physical import PhysicalPlan, RowMerge
from ..store.agg_cache import AggregateCache
from ..store.snapshot import Snapshot
from .collector import ChiCollector
from .context import ExecContext
from .control import QueryControl, running
from .fragment import FragmentOutput, run_fragment
from .merge import merge_groups, merge_rows
from .remote import RemotePixels
from .settings import ExecSettings
from .stats import QueryStats, StatsRecords, WorkerStats


def shards(snapshot: Snapshot, settings: ExecSettings) -> list[list[int]]:
    """The snapshot's segment positions, split into shards of ``settings.shard_segments``
    (one shard of all of them by default: one pass of the kernels over everything)."""
    positions = list(range(len(snapshot.segments)))
    size = settings.shard_segments or max(len(positions), 1)
    return [positions[i:i + size] for i in range(0, len(positions), size)] or [[]]


class FragmentRunner(Protocol):
    """Runs a plan's fragment on shards of a snapshot's segments somewhere else (a cluster:
    ``exec.dask_runner``) and returns each shard's output, in order."""

    def run(self, plan: PhysicalPlan, snapshot: Snapshot, shards: list[list[int]],
            use_index: bool, settings: ExecSettings) -> list[FragmentOutput]: ...

    def pixels(self, snapshot: Snapshot) -> RemotePixels:
        """Where the merge counts pixels of many masks (groups' members)."""
        ...

    def close(self) -> None:
        """Release what the runner holds (a connection's close)."""
        ...


def execute(plan: PhysicalPlan, snapshot: Snapshot, cache: AggregateCache | None = None, *,
            use_index: bool = True, control: QueryControl | None = None,
            settings: ExecSettings | None = None, read_only: bool = False,
            runner: FragmentRunner | None = None) -> tuple[pa.Table, QueryStats]:
    """Run ``plan`` over ``snapshot``; ``control`` lets the caller cancel or time it, and
    ``cache`` keeps CHIs of groups' aggregated masks across queries. ``read_only``: write
    nothing (lazy indexing's CHIs are neither built nor saved; the cache is only read).
    ``runner`` runs the fragments elsewhere (the merge runs here)."""
    settings = settings or ExecSettings()
    start = time.perf_counter()
    with running(control or QueryControl()):
        try:
            table, records, collector, workers = _run(plan, snapshot, cache, use_index,
                                                      settings, read_only, runner)
        except QueryError as e:
            if e.text is None and e.line is not None:   # located by the evaluator: show where
                raise QueryError(e.message, plan.query.text, e.line, e.column) from None
            raise
    stats = _totals(plan, records, collector, use_index, time.perf_counter() - start)
    return table, replace(stats, workers=workers)


def _run(plan: PhysicalPlan, snapshot: Snapshot, cache: AggregateCache | None, use_index: bool,
         settings: ExecSettings, read_only: bool, runner: FragmentRunner | None,
         ) -> tuple[pa.Table, StatsRecords, ChiCollector, dict[str, WorkerStats]]:
    collector = ChiCollector(snapshot.segments, cache if use_index else None,
                             settings.chis_held, persist=not read_only)

    def context(records: StatsRecords) -> ExecContext:   # one collector for all shards
        verify = records.of(plan.fragment.verify) if plan.fragment.verify else VerifyStats()
        return ExecContext.of_snapshot(snapshot, use_index=use_index, settings=settings,
                                       records=records, verify=verify, collector=collector)

    outs: list[FragmentOutput] = []
    if runner is not None:
        outs = runner.run(plan, snapshot, shards(snapshot, settings), use_index, settings)
    else:
        for shard in shards(snapshot, settings):
            outs.append(run_fragment(plan, snapshot.rows_of(shard), context(StatsRecords()),
                                     memo=snapshot.memo(("regions", tuple(shard)))))
    records = StatsRecords()
    for out in outs:
        records.add(out.records)
    ctx_remote: RemotePixels | None = None
    if isinstance(plan.merge, RowMerge):
        table = merge_rows(plan.merge.merge, outs, records)
    else:
        ctx = context(records)
        if runner is not None:
            ctx = replace(ctx, remote=runner.pixels(snapshot))
        ctx_remote = ctx.remote
        table = merge_groups(plan, outs, ctx, cache)
    collector.save()
    workers = _by_worker(outs)
    if ctx_remote is not None:
        for name, done in ctx_remote.workers.items():
            w = workers.setdefault(name, WorkerStats())
            w.shards += done.shards
            w.verified += done.verified
            w.seconds += done.seconds
    return table, records, collector, workers


def _by_worker(outs: list[FragmentOutput]) -> dict[str, WorkerStats]:
    """What each cluster worker did (empty when the shards ran here)."""
    workers: dict[str, WorkerStats] = {}
    for out in outs:
        if out.worker is None:
            continue
        w = workers.setdefault(out.worker, WorkerStats())
        ops = out.records.by_operator
        w.shards += 1
        w.masks += int(getattr(ops.get(Scan), "masks", 0))
        w.verified += int(getattr(ops.get(Verify), "verified", 0))
        w.seconds += out.seconds
    return workers


def _totals(plan: PhysicalPlan, records: StatsRecords, collector: ChiCollector,
            use_index: bool, seconds: float) -> QueryStats:
    ops = records.by_operator

    def count(kind: type, name: str) -> int:
        record = ops.get(kind)
        return int(getattr(record, name)) if record is not None else 0

    verified = count(Verify, "verified") + count(MaskAggregation, "verified")
    bytes_read = count(Verify, "bytes_read") + count(MaskAggregation, "bytes_read")
    if plan.fragment.verify is not None:
        records.of(plan.fragment.verify).chis_built += collector.saved_masks
    if not isinstance(plan.merge, RowMerge) and plan.merge.mask_aggregation is not None:
        records.of(plan.merge.mask_aggregation).chis_cached += collector.saved_aggregates
    return QueryStats(
        masks_total=count(Scan, "masks"),
        rejected_by_metadata=count(MetaFilter, "seen") - count(MetaFilter, "passed"),
        accepted_by_index=count(BoundFilter, "accepted"),
        rejected_by_index=count(BoundFilter, "rejected"), verified=verified,
        bytes_read=bytes_read, chis_built=collector.saved_masks + collector.saved_aggregates,
        used_index=use_index, seconds=seconds, operators=dict(ops))
