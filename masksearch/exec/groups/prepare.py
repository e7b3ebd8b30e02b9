"""Prepared aggregates: every group's aggregated masks' CHIs, computed ahead of the queries
that need them (``Database.prepare_aggregates``), like a materialized view.

They are entries of the aggregated-mask cache (``store.agg_cache``) in files of their own,
keyed like every entry by the aggregation and the exact member mask ids. So a later change
never makes an answer wrong: a group whose members changed (an ingest into it, a DELETE, an
UPDATE of its key, another WHERE) has other members, finds no entry and is bounded from its
members as before, group by group; mask ids are never reused, and a mask's pixels never
change under its id. Preparing again computes the groups that have no entry yet only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ...lang import ast
from ...plan.physical import GroupMerge, PhysicalPlan
from ...store.agg_cache import AggregateCache
from ...store.snapshot import Snapshot
from ..collector import ChiCollector
from ..context import ExecContext
from ..fragment import FragmentOutput, run_fragment
from ..merge import group_batch
from ..rows import RowBatch
from ..settings import ExecSettings
from ..stats import StatsRecords

KINDS = ("intersect", "union", "mean")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PreparedAggregates:
    """What ``Database.prepare_aggregates`` did."""

    group_by: tuple[str, ...]
    kinds: tuple[str, ...]
    where: str | None
    groups: int           # groups of this shape in the database now
    computed: int         # groups whose aggregated masks were computed now
    already: int          # groups whose every kind was stored already (not computed again)
    masks_read: int       # member masks decoded
    chis_saved: int       # CHIs written
    seconds: float


def preparation_sql(group_by: str | Sequence[str], kinds: str | Sequence[str],
                    where: str | None) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The checked arguments of ``prepare_aggregates`` and the query whose groups and
    aggregated masks they name; ``ValueError`` naming what is wrong."""
    cols = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    if not cols:
        raise ValueError("prepare_aggregates: group_by names no column (give one or more, "
                         "e.g. group_by='image_id')")
    for c in cols:
        if not isinstance(c, str) or not _NAME.match(c):
            raise ValueError(f"prepare_aggregates: {c!r} is not a column name")
    if len(set(cols)) != len(cols):
        raise ValueError(f"prepare_aggregates: group_by repeats a column ({', '.join(cols)})")
    ks = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not ks:
        raise ValueError("prepare_aggregates: kinds is empty (choose from "
                         f"{', '.join(KINDS)})")
    for k in ks:
        if k not in KINDS:
            raise ValueError(f"prepare_aggregates: unknown kind {k!r} (choose from "
                             f"{', '.join(KINDS)})")
    ks = tuple(dict.fromkeys(ks))
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise ValueError("prepare_aggregates: where must be a condition (SQL text) or None")
    terms = ", ".join(f"CP({k}(mask), full, (0.5, 1]) AS _{k}" for k in ks)
    text = (f"SELECT {', '.join(cols)}, {terms} FROM masks"
            + (f" WHERE {where}" if where is not None else "")
            + f" GROUP BY {', '.join(cols)}")
    return cols, ks, text


def prepare(plan: PhysicalPlan, snapshot: Snapshot, cache: AggregateCache,
            group_by: tuple[str, ...], kinds: tuple[str, ...], where: str | None,
            settings: ExecSettings | None = None) -> PreparedAggregates:
    """Compute and store the CHIs of the aggregated masks (``kinds``) of every group of
    ``plan`` (the query of ``preparation_sql``) that has none stored yet."""
    from ..executor import shards

    start = time.perf_counter()
    m = plan.merge
    assert isinstance(m, GroupMerge)
    assert m.mask_aggregation is not None
    base = settings or ExecSettings()
    # Every group's CHIs are built (no share of the groups, as a query caches).
    settings = replace(base, cached_groups=1 << 62, shard_segments=None)
    collector = ChiCollector(snapshot.segments, cache, settings.chis_held, prepared=True)

    def context(records: StatsRecords) -> ExecContext:
        return ExecContext.of_snapshot(snapshot, use_index=True, settings=settings,
                                       records=records, collector=collector)

    outs: list[FragmentOutput] = [run_fragment(plan, snapshot.rows_of(shard),
                                               context(StatsRecords()))
                                  for shard in shards(snapshot, settings)]
    ctx = context(StatsRecords())
    members = RowBatch.concat([o.members for o in outs if o.members is not None], ctx)
    batch = group_batch(plan, members, ctx, cache)
    groups = batch.groups
    filled = groups.member_rows.sizes(np.arange(len(groups))) > 0
    have = np.ones(len(groups), bool)
    for kind in kinds:
        have &= batch.keys.located(cache, kind).found
    todo = np.flatnonzero(filled & ~have)
    cps = [a for a in m.bounds.aggregates if isinstance(a, ast.CP)]
    if len(todo):
        batch.aggregator.count(groups, batch.keys, cps,
                               [plan.query.group_cuts[cp] for cp in cps], todo)
    collector.save()
    return PreparedAggregates(group_by, kinds, where, int(filled.sum()), len(todo),
                              int((filled & have).sum()), int(batch.aggregator.stats.verified),
                              collector.saved_aggregates, time.perf_counter() - start)
