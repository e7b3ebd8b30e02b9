"""Plan fragments as Dask tasks: each shard of segments runs on a worker, which opens the
segments itself (from the same path: a shared file system); only the shards' small outputs
travel back, and the merge runs where the query was asked.

A worker builds its snapshot from the manifest the query started on (sent with the task),
so every shard reads the same committed state even when a commit lands meanwhile; the
client's reader registration keeps that state's files. Workers save no CHI (lazy indexing
builds them where the query runs locally).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import MaskSearchError, QueryError
from ..plan.operators import BoundOrderTopK
from ..plan.physical import PhysicalPlan
from ..store.location import Location
from ..store.manifest import Manifest
from ..store.snapshot import Snapshot
from ..store.store import Store
from .collector import ChiCollector
from .context import ExecContext
from .fragment import FragmentOutput, ShardReach, reach_of_shard, run_fragment
from .groups.verify import aggregate_counts
from .remote import CutPair, split_evenly
from .settings import ExecSettings
from .sharded_top_k import ShardedTopK
from .stats import StatsRecords
from .verify import CountTask, read_mask, verify_candidates

_stores: dict[str | Location, Store] = {}   # per worker process: databases opened so far
_lock = threading.Lock()
_snapshots: dict[tuple[object, ...], Snapshot] = {}    # per worker process: the last states read
SNAPSHOTS_HELD = 4
# Segment entries (about 250 bytes each) sent with a query's tasks above which the manifest
# goes to the cluster once instead.
SCATTER_ABOVE = 20_000


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


def count_rows_task(root: str | Location, manifest: Manifest, seg: np.ndarray,
                    row: np.ndarray, boxes: list[np.ndarray], cuts: list[CutPair]
                    ) -> tuple[np.ndarray, int]:
    """Exact counts of some masks for the merge (``RemotePixels.count_rows``)."""
    snapshot = _snapshot(root, manifest)
    collector = ChiCollector(snapshot.segments, None, 1, persist=False)
    return verify_candidates(CountTask(snapshot.segments, seg, row, boxes, cuts), collector)


def count_groups_task(root: str | Location, manifest: Manifest,
                      members: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                      boxes: list[np.ndarray], cuts: list[CutPair]) -> np.ndarray:
    """Exact counts over some groups' aggregated masks (``RemotePixels.count_groups``)."""
    snapshot = _snapshot(root, manifest)
    collector = ChiCollector(snapshot.segments, None, 1, persist=False)
    counts = np.zeros((len(members), len(kinds)), np.int64)
    for g, (segs, rows) in enumerate(members):
        if len(rows):
            masks = [read_mask(snapshot.segments, int(k), int(r), collector)
                     for k, r in zip(segs, rows, strict=True)]
            aggregate_counts(masks, kinds, [b[g] for b in boxes], cuts, counts[g])
    return counts


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
    system), or a location on object storage with its storage options."""
    # A state's tasks share its snapshot (and the metadata it reads): building one costs a
    # lookup per segment. Its segments' names (random) tell states of equal version apart.
    key = (root, manifest.version, len(manifest.segments),
           manifest.segments[-1].name if manifest.segments else "")
    with _lock:
        snapshot = _snapshots.get(key)
        if snapshot is not None:
            return snapshot
        store = _stores.get(root)
        if store is None:
            store = _stores[root] = Store(root, create=False, read_only=True)
        snapshot = _snapshots[key] = store.snapshot_of(manifest)
        while len(_snapshots) > SNAPSHOTS_HELD:
            _snapshots.pop(next(iter(_snapshots)))     # the oldest: its files may go
        return snapshot


class DaskRunner:
    """Runs fragments on a ``distributed.Client``'s workers, a task per shard."""

    def __init__(self, client: Any, root: str | Location):
        self.client = client
        self.root = root
        self._scattered: tuple[int, Any] | None = None   # (manifest version, its future)

    def run(self, plan: PhysicalPlan, snapshot: Snapshot, shards: list[list[int]],
            use_index: bool, settings: ExecSettings) -> list[FragmentOutput]:
        threads = self._threads()
        positions = [k for shard in shards for k in shard]
        # Segments per task: as the settings say, else about four tasks per worker thread
        # (the scheduler costs about a millisecond a task; fewer, larger tasks balance worse).
        size = settings.shard_segments or max(1, -(-len(positions) // (4 * threads)))
        tasks = [positions[i:i + size] for i in range(0, len(positions), size)] or [[]]
        manifest = self._shared(snapshot.manifest, len(tasks))
        select = plan.fragment.select
        if use_index and isinstance(select, BoundOrderTopK) and len(tasks) > threads:
            return self._top_k(plan, manifest, tasks, settings, select, threads)
        # A top-k of no more tasks than threads runs in one wave: each shard's own floor
        # prunes it, and a first round for a global floor would cost a round trip more.
        return self._gather([self._submit(run_shard, manifest, plan, shard, use_index,
                                          settings) for shard in tasks])

    def pixels(self, snapshot: Snapshot) -> DaskPixels:
        return DaskPixels(self, snapshot.manifest)

    def _threads(self) -> int:
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def _shared(self, manifest: Manifest, tasks: int) -> Any:
        """The manifest, or (when sending it with every task would move megabytes) a
        future of one copy sent to the cluster, kept for the queries of its version."""
        if len(manifest.segments) * tasks < SCATTER_ABOVE:
            return manifest
        if self._scattered is None or self._scattered[0] != manifest.version:
            self._scattered = (manifest.version, self.client.scatter(manifest, hash=False))
        return self._scattered[1]

    def _top_k(self, plan: PhysicalPlan, manifest: Any, tasks: list[list[int]],
               settings: ExecSettings, select: BoundOrderTopK,
               threads: int) -> list[FragmentOutput]:
        """Every shard's bounds first, then the shards that can still contribute, best
        first, a few at a time so that each starts with the floor the finished ones set
        (``ShardedTopK``)."""
        from distributed import as_completed

        reaches: list[ShardReach] = self._gather([
            self._submit(reach_shard, manifest, plan, shard, settings) for shard in tasks])
        top = ShardedTopK(select, reaches)
        running = as_completed()  # type: ignore[no-untyped-call]
        outs: list[FragmentOutput] = []

        def start_next() -> None:
            i = top.next_shard()
            if i is not None:
                future = self._submit(run_shard, manifest, plan, tasks[i], True, settings,
                                      top.floor)
                running.add(future)  # type: ignore[no-untyped-call]

        for _ in range(2 * threads):
            start_next()
        try:
            for future in running:
                out = future.result()
                outs.append(out)
                top.learn(out)
                start_next()
        except MaskSearchError:
            raise
        except Exception as e:
            self.client.cancel(list(running.futures))
            raise _cluster_error(e) from None
        return outs + [FragmentOutput(reaches[i].records, worker=reaches[i].worker,
                                      seconds=reaches[i].seconds, skipped=True)
                       for i in top.skipped]

    def _submit(self, task: Any, *args: Any) -> Any:
        return self.client.submit(task, self.root, *args, pure=False)

    def _gather(self, futures: list[Any]) -> list[Any]:
        try:
            return list(self.client.gather(futures))
        except MaskSearchError:
            raise      # the query's own error, raised on a worker (a damaged file, ...)
        except Exception as e:   # the cluster's: a worker lost too often, a closed client
            self.client.cancel(futures)
            raise _cluster_error(e) from None


def _cluster_error(e: Exception) -> QueryError:
    return QueryError(f"the Dask cluster could not run the query: {type(e).__name__}: {e}")


class DaskPixels:
    """The merge's pixel counting on the workers: the masks split in about four tasks per
    worker thread, each reading its masks from the query's snapshot."""

    def __init__(self, runner: DaskRunner, manifest: Manifest):
        self.runner, self.manifest = runner, manifest

    def count_rows(self, seg: np.ndarray, row: np.ndarray, boxes: list[np.ndarray],
                   cuts: list[CutPair]) -> tuple[np.ndarray, int]:
        order = np.argsort(seg, kind="stable")       # a task's masks in few segments
        parts = [order[p] for p in split_evenly(len(order), 4 * self.runner._threads())]
        manifest = self.runner._shared(self.manifest, len(parts))
        results = self.runner._gather([
            self.runner._submit(count_rows_task, manifest, seg[p], row[p],
                                [b[p] for b in boxes], cuts) for p in parts])
        counts = np.zeros((len(seg), len(cuts)), np.int64)
        for p, (part, _) in zip(parts, results, strict=True):
            counts[p] = part
        return counts, sum(int(nbytes) for _, nbytes in results)

    def count_groups(self, members: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                     boxes: list[np.ndarray], cuts: list[CutPair]) -> np.ndarray:
        parts = split_evenly(len(members), 4 * self.runner._threads())
        manifest = self.runner._shared(self.manifest, len(parts))
        results = self.runner._gather([
            self.runner._submit(count_groups_task, manifest,
                                [members[int(g)] for g in p], kinds, [b[p] for b in boxes],
                                cuts) for p in parts])
        return np.concatenate(results) if results else np.zeros((0, len(kinds)), np.int64)
