"""What a Dask worker runs for a query: a shard's fragment, a top-k shard's bounds, and the
merge's pixel counting; each over the snapshot of the state the query started on, which the
worker opens itself (a shared folder, or object storage) and keeps for that state's other
tasks. Workers save nothing: lazily missing CHIs are neither built nor saved here."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from ..plan.physical import PhysicalPlan
from ..store.location import Location
from ..store.manifest import Manifest
from ..store.snapshot import Snapshot
from ..store.store import Store
from .collector import ChiCollector
from .context import ExecContext
from .fragment import FragmentOutput, ShardReach, reach_of_shard, run_fragment
from .groups.verify import aggregate_counts
from .remote import CutPair
from .settings import ExecSettings
from .stats import StatsRecords
from .verify import CountTask, prefetch, prefetching, read_mask, verify_candidates

_stores: dict[str | Location, Store] = {}   # per worker process: databases opened so far
_lock = threading.Lock()
_snapshots: dict[tuple[object, ...], Snapshot] = {}    # per worker process: the last states read
SNAPSHOTS_HELD = 4
GROUPS_AHEAD = 16     # groups whose masks a task asks for at once


def run_shard(root: str | Location, manifest: Manifest, plan: PhysicalPlan, shard: list[int],
              use_index: bool, settings: ExecSettings,
              floor: float | None = None) -> FragmentOutput:
    """The fragment of ``plan`` over segments ``shard`` of the state ``manifest`` names
    (the task a worker runs); ``floor``: a top-k's floor from the other shards."""
    snapshot, ctx = _context(root, manifest, plan, use_index, settings)
    start = time.perf_counter()
    out = run_fragment(plan, snapshot.rows_of(shard), ctx, floor)
    return replace(out, worker=_worker_name(), seconds=time.perf_counter() - start)


def reach_shard(root: str | Location, manifest: Manifest, plan: PhysicalPlan, shard: list[int],
                settings: ExecSettings) -> ShardReach:
    """What the index says of a top-k's shard (the first round's task: no pixel read)."""
    snapshot, ctx = _context(root, manifest, plan, True, settings)
    start = time.perf_counter()
    reach = reach_of_shard(plan, snapshot.rows_of(shard), ctx)
    return replace(reach, worker=_worker_name(), seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class Counted:
    """What a merge's counting task sends back: the counts, the compressed bytes read,
    where it ran and for how long."""

    counts: np.ndarray
    nbytes: int
    worker: str
    seconds: float


def count_rows_task(root: str | Location, manifest: Manifest, seg: np.ndarray,
                    row: np.ndarray, boxes: list[np.ndarray], cuts: list[CutPair]) -> Counted:
    """Exact counts of some masks for the merge (``RemotePixels.count_rows``)."""
    start = time.perf_counter()
    snapshot = _snapshot(root, manifest)
    collector = ChiCollector(snapshot.segments, None, 1, persist=False)
    counts, nbytes = verify_candidates(CountTask(snapshot.segments, seg, row, boxes, cuts),
                                       collector)
    return Counted(counts, nbytes, _worker_name(), time.perf_counter() - start)


def count_groups_task(root: str | Location, manifest: Manifest,
                      members: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                      boxes: list[np.ndarray], cuts: list[CutPair]) -> Counted:
    """Exact counts over some groups' aggregated masks (``RemotePixels.count_groups``)."""
    start = time.perf_counter()
    snapshot = _snapshot(root, manifest)
    collector = ChiCollector(snapshot.segments, None, 1, persist=False)
    counts = np.zeros((len(members), len(kinds)), np.int64)
    every = (np.concatenate([s for s, _ in members]), np.concatenate([r for _, r in members])) \
        if members else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    with prefetching(snapshot.segments, *every):
        _count_groups(snapshot, collector, members, kinds, boxes, cuts, counts)
    nbytes = sum(snapshot.segments[int(k)].blob_size(int(r))
                 for k, r in zip(*every, strict=True))
    return Counted(counts, nbytes, _worker_name(), time.perf_counter() - start)


def _count_groups(snapshot: Snapshot, collector: ChiCollector,
                  members: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                  boxes: list[np.ndarray], cuts: list[CutPair], counts: np.ndarray) -> None:
    for g, (segs, rows) in enumerate(members):
        if g % GROUPS_AHEAD == 0:       # from object storage: the next groups' masks at once
            ahead = members[g:g + GROUPS_AHEAD]
            prefetch(snapshot.segments, np.concatenate([s for s, _ in ahead]),
                     np.concatenate([r for _, r in ahead]))
        if len(rows):
            masks = [read_mask(snapshot.segments, int(k), int(r), collector)
                     for k, r in zip(segs, rows, strict=True)]
            aggregate_counts(masks, kinds, [b[g] for b in boxes], cuts, counts[g])


def _context(root: str | Location, manifest: Manifest, plan: PhysicalPlan, use_index: bool,
             settings: ExecSettings) -> tuple[Snapshot, ExecContext]:
    snapshot = _snapshot(root, manifest)
    records = StatsRecords()
    verify = records.of(plan.fragment.verify) if plan.fragment.verify else None
    collector = ChiCollector(snapshot.segments, None, settings.chis_held, persist=False)
    return snapshot, ExecContext.of_snapshot(snapshot, use_index=use_index,
                                             settings=settings, records=records,
                                             verify=verify, collector=collector)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "worker"


def _snapshot(root: str | Location, manifest: Manifest) -> Snapshot:
    """The state ``manifest`` names of the database at ``root``: a local path (a shared file
    system), or a location on object storage with its storage options. A state's tasks
    share its snapshot (and the metadata it reads): building one costs a lookup per
    segment. The worker registers no reader: the client that sent the query does."""
    key = (root, manifest.identity())
    with _lock:
        snapshot = _snapshots.get(key)
        if snapshot is not None:
            return snapshot
        store = _stores.get(root)
        if store is None:
            store = _stores[root] = Store(root, create=False, read_only=True, register=False)
        snapshot = _snapshots[key] = store.snapshot_of(manifest)
        if len(_snapshots) > SNAPSHOTS_HELD:
            _snapshots.pop(next(iter(_snapshots)))     # the oldest
            for where, held in _stores.items():        # its segments, unless still used
                held.retain([s for (r, _), s in _snapshots.items() if r == where])
        return snapshot
