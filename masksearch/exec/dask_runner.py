"""Plan fragments as Dask tasks (``dask_tasks``): each shard of segments runs on a worker,
which opens the segments itself; only the shards' small outputs travel back (ids, values,
bounds, a part of a top-k), and the merge runs where the query was asked, sending its pixel
work of many masks back to the workers (``DaskPixels``).

Workers read the state the query started on (its manifest goes with the tasks, or once to
the cluster when large), so every shard reads the same committed state even when a commit
lands meanwhile; the client's reader registration keeps that state's files.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import MaskSearchError, QueryError
from ..plan.operators import BoundOrderTopK
from ..plan.physical import PhysicalPlan
from ..store.location import Location
from ..store.manifest import Manifest
from ..store.snapshot import Snapshot
from . import control
from .dask_tasks import Counted, count_groups_task, count_rows_task, reach_shard, run_shard
from .fragment import FragmentOutput, ShardReach
from .remote import CutPair, split_evenly
from .settings import ExecSettings
from .sharded_top_k import ShardedTopK
from .stats import WorkerStats

# Segment entries (about 250 bytes each) sent with a query's tasks above which the manifest
# goes to the cluster once instead.
SCATTER_ABOVE = 20_000


def task_count(segments: int, threads: int) -> int:
    """How many tasks a query's segments make by default: four per worker thread on a small
    cluster (a slow task then delays the answer less), down to one per thread on a large
    one, since the scheduler handles tasks one at a time (1 to 2 ms each, measured)."""
    return max(1, min(segments, 4 * threads, max(threads, 256)))


class DaskRunner:
    """Runs fragments on a ``distributed.Client``'s workers, a task per shard."""

    def __init__(self, client: Any, root: str | Location, *, owns_client: bool = False):
        self.client = client
        self.root = root
        self.owns_client = owns_client      # made for this connection: closed with it
        self._scattered: tuple[object, Any] | None = None   # (a state's identity, its future)
        self._threads_seen: tuple[float, int] | None = None   # (when, worker threads)

    def run(self, plan: PhysicalPlan, snapshot: Snapshot, shards: list[list[int]],
            use_index: bool, settings: ExecSettings) -> list[FragmentOutput]:
        threads = self._threads()
        positions = [k for shard in shards for k in shard]
        n = len(positions)
        size = settings.shard_segments or max(1, -(-n // task_count(n, threads)))
        tasks = [positions[i:i + size] for i in range(0, len(positions), size)] or [[]]
        manifest = self._shared(snapshot.manifest, len(tasks))
        select = plan.fragment.select
        if use_index and isinstance(select, BoundOrderTopK) and len(tasks) > 2 * threads:
            return self._top_k(plan, manifest, tasks, settings, select, threads)
        # A top-k whose tasks all start at once (the first wave of ``_top_k`` is two per
        # thread) runs in one round: each task's own floor prunes it, and a first round for
        # a global floor would cost a round trip more than it saves.
        return self._gather([self._submit(run_shard, manifest, plan, shard, use_index,
                                          settings) for shard in tasks])

    def pixels(self, snapshot: Snapshot) -> DaskPixels:
        return DaskPixels(self, snapshot.manifest)

    def close(self) -> None:
        """Close the client if this runner's connection made it (from an address)."""
        if self.owns_client:
            self.client.close()

    def _threads(self) -> int:
        """The cluster's worker threads, asked of the scheduler at most once a second (a
        round trip; a cluster that scales is seen a second late)."""
        now = time.monotonic()
        if self._threads_seen is None or now - self._threads_seen[0] > 1.0:
            workers = self.client.scheduler_info().get("workers", {})
            self._threads_seen = (now, max(1, sum(int(w.get("nthreads", 1))
                                                  for w in workers.values())))
        return self._threads_seen[1]

    def _shared(self, manifest: Manifest, tasks: int) -> Any:
        """The manifest, or (when sending it with every task would move megabytes) a
        future of one copy sent to the cluster, kept for the queries of its version."""
        if len(manifest.segments) * tasks < SCATTER_ABOVE:
            return manifest
        if self._scattered is None or self._scattered[0] != manifest.identity():
            self._scattered = (manifest.identity(), self.client.scatter(manifest, hash=False))
        return self._scattered[1]

    def _top_k(self, plan: PhysicalPlan, manifest: Any, tasks: list[list[int]],
               settings: ExecSettings, select: BoundOrderTopK,
               threads: int) -> list[FragmentOutput]:
        """Every shard's bounds first, then the shards that can still contribute, best
        first, a few at a time so that each starts with the floor the finished ones set
        (``ShardedTopK``)."""
        reaches: list[ShardReach] = self._gather([
            self._submit(reach_shard, manifest, plan, shard, settings) for shard in tasks])
        top = ShardedTopK(select, reaches)
        running: set[Any] = set()
        outs: list[FragmentOutput] = []

        def start_next() -> None:
            i = top.next_shard()
            if i is not None:
                running.add(self._submit(run_shard, manifest, plan, tasks[i], True, settings,
                                         top.floor))

        for _ in range(2 * threads):
            start_next()
        while running:
            for future in self._first_done(list(running)):
                running.discard(future)
                out = self._result(future, list(running))
                outs.append(out)
                top.learn(out)
                start_next()
        return outs + [FragmentOutput(reaches[i].records, worker=reaches[i].worker,
                                      seconds=reaches[i].seconds, skipped=True)
                       for i in top.skipped]

    def _submit(self, task: Any, *args: Any) -> Any:
        return self.client.submit(task, self.root, *args, pure=False)

    def _gather(self, futures: list[Any]) -> list[Any]:
        """The tasks' results, in order (see ``_first_done`` and ``_result``)."""
        results: dict[Any, Any] = {}
        pending = list(futures)
        while pending:
            for future in self._first_done(pending):
                results[future.key] = self._result(future, futures)
            pending = [f for f in pending if f.key not in results]
        return [results[f.key] for f in futures]

    def _first_done(self, futures: list[Any]) -> list[Any]:
        """Some finished tasks of ``futures``, once there are: the query's control is
        checked meanwhile, so a timeout or a cancel stops the wait (and the tasks)."""
        from distributed import wait

        ctl = control.current()
        while True:
            try:
                ctl.check()
            except BaseException:
                self.client.cancel(futures)
                raise
            try:
                done = wait(futures, timeout=0.05,  # type: ignore[no-untyped-call]
                            return_when="FIRST_COMPLETED").done
                return list(done)
            except TimeoutError:
                continue

    def _result(self, future: Any, others: list[Any]) -> Any:
        """A finished task's result; its error cancels ``others``."""
        try:
            return future.result()
        except MaskSearchError:
            self.client.cancel(others)
            raise      # the query's own error, raised on a worker (a damaged file, ...)
        except Exception as e:   # the cluster's: a worker lost too often, a closed client
            self.client.cancel(others)
            raise _cluster_error(e) from None


def _cluster_error(e: Exception) -> QueryError:
    return QueryError(f"the Dask cluster could not run the query: {type(e).__name__}: {e}")


class DaskPixels:
    """The merge's pixel counting on the workers: the masks split in about four tasks per
    worker thread, each reading its masks from the query's snapshot. ``workers``: what
    each worker did (for EXPLAIN ANALYZE)."""

    def __init__(self, runner: DaskRunner, manifest: Manifest):
        self.runner, self.manifest = runner, manifest
        self.workers: dict[str, WorkerStats] = {}

    def count_rows(self, seg: np.ndarray, row: np.ndarray, boxes: list[np.ndarray],
                   cuts: list[CutPair]) -> tuple[np.ndarray, int]:
        order = np.argsort(seg, kind="stable")       # a task's masks in few segments
        parts = [order[p] for p in split_evenly(len(order), 4 * self.runner._threads())]
        manifest = self.runner._shared(self.manifest, len(parts))
        results = self.runner._gather([
            self.runner._submit(count_rows_task, manifest, seg[p], row[p],
                                [b[p] for b in boxes], cuts) for p in parts])
        counts = np.zeros((len(seg), len(cuts)), np.int64)
        for p, done in zip(parts, results, strict=True):
            counts[p] = done.counts
            self._note(done, len(p))
        return counts, sum(done.nbytes for done in results)

    def count_groups(self, members: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                     boxes: list[np.ndarray], cuts: list[CutPair]) -> tuple[np.ndarray, int]:
        parts = split_evenly(len(members), 4 * self.runner._threads())
        manifest = self.runner._shared(self.manifest, len(parts))
        results = self.runner._gather([
            self.runner._submit(count_groups_task, manifest,
                                [members[int(g)] for g in p], kinds, [b[p] for b in boxes],
                                cuts) for p in parts])
        for p, done in zip(parts, results, strict=True):
            self._note(done, sum(len(members[int(g)][1]) for g in p))
        counts = np.concatenate([done.counts for done in results]) if results \
            else np.zeros((0, len(kinds)), np.int64)
        return counts, sum(done.nbytes for done in results)

    def _note(self, done: Counted, masks: int) -> None:
        stats = self.workers.setdefault(done.worker, WorkerStats())
        stats.shards += 1
        stats.verified += masks
        stats.seconds += done.seconds
