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

from ..errors import MaskSearchError, QueryError
from ..plan.physical import PhysicalPlan
from ..store.manifest import Manifest
from ..store.snapshot import Snapshot
from ..store.store import Store
from .collector import ChiCollector
from .context import ExecContext
from .fragment import FragmentOutput, run_fragment
from .settings import ExecSettings
from .stats import StatsRecords

_stores: dict[str, Store] = {}       # per worker process: databases opened so far
_lock = threading.Lock()


def run_shard(root: str, manifest: Manifest, plan: PhysicalPlan, shard: list[int],
              use_index: bool, settings: ExecSettings) -> FragmentOutput:
    """The fragment of ``plan`` over segments ``shard`` of the state ``manifest`` names
    (the task a worker runs)."""
    snapshot = _snapshot(root, manifest)
    records = StatsRecords()
    verify = records.of(plan.fragment.verify) if plan.fragment.verify else None
    collector = ChiCollector(snapshot.segments, None, settings.chis_held, persist=False)
    ctx = ExecContext.of_snapshot(snapshot, use_index=use_index, settings=settings,
                                  records=records, verify=verify, collector=collector)
    start = time.perf_counter()
    out = run_fragment(plan, snapshot.rows_of(shard), ctx)
    return replace(out, worker=_worker_name(), seconds=time.perf_counter() - start)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "worker"


def _snapshot(root: str, manifest: Manifest) -> Snapshot:
    with _lock:
        store = _stores.get(root)
        if store is None:
            store = _stores[root] = Store(root, create=False, read_only=True)
        return store.snapshot_of(manifest)


class DaskRunner:
    """Runs fragments on a ``distributed.Client``'s workers, a task per shard."""

    def __init__(self, client: Any, root: str):
        self.client = client
        self.root = root

    def run(self, plan: PhysicalPlan, snapshot: Snapshot, shards: list[list[int]],
            use_index: bool, settings: ExecSettings) -> list[FragmentOutput]:
        # A task per segment unless the settings group them: the workers share the shards.
        size = settings.shard_segments or 1
        positions = [k for shard in shards for k in shard]
        tasks = [positions[i:i + size] for i in range(0, len(positions), size)] or [[]]
        futures = [self.client.submit(run_shard, self.root, snapshot.manifest, plan, shard,
                                      use_index, settings, pure=False) for shard in tasks]
        try:
            outs: list[FragmentOutput] = self.client.gather(futures)
        except MaskSearchError:
            raise      # the query's own error, raised on a worker (a damaged file, ...)
        except Exception as e:   # the cluster's: a worker lost too often, a closed client
            self.client.cancel(futures)
            raise QueryError(f"the Dask cluster could not run the query: "
                             f"{type(e).__name__}: {e}") from None
        return outs
