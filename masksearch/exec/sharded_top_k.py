"""A top-k whose shards run elsewhere (a cluster's workers): the index first, then only the
shards that can still contribute.

Every shard's bounds come back first (``ShardReach``: the best value it can reach, and the
worst-case values of up to k of its candidates sure to qualify). Their k-th best over all
shards is a floor the result reaches, so a shard whose reach falls short of it cannot
contribute. The rest run best reach first, each told the tightest floor known when it
starts; every finished shard's exact values tighten the floor for the shards still waiting,
which are skipped once they cannot reach it. Ties with the floor still run (a tie key may
let them in)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pyarrow as pa

from ..plan.operators import BoundOrderTopK
from ..store.arrow_compute import cast
from ..store.numpy_arrow import array_numpy
from .fragment import FragmentOutput, ShardReach
from .selection import kth_best


class ShardedTopK:
    """Which shard runs next, with which floor, as results arrive."""

    def __init__(self, select: BoundOrderTopK, reaches: list[ShardReach]):
        self.k, self.desc = select.k, select.order_by[0].descending
        self.reaches = reaches
        sure = [r.sure for r in reaches]
        self.floor = kth_best(np.concatenate(sure) if sure else np.zeros(0), self.k,
                              self.desc)
        self._best = np.zeros(0)       # the best exact first-key values seen, at most k
        self._waiting = deque(self._best_first())
        self.skipped: list[int] = []

    def _best_first(self) -> list[int]:
        """Shard positions by their reach, best first; shards that can reach no value last."""
        valued = {i: r.reach for i, r in enumerate(self.reaches) if r.reach is not None}
        best = sorted(valued, key=lambda i: -valued[i] if self.desc else valued[i])
        return best + [i for i in range(len(self.reaches)) if i not in valued]

    def next_shard(self) -> int | None:
        """The next shard to run (with ``floor`` as it stands), or None when no waiting
        shard can contribute any more (those are now in ``skipped``)."""
        while self._waiting:
            i = self._waiting.popleft()
            if self._can_reach(self.reaches[i].reach):
                return i
            self.skipped.append(i)
        return None

    def _can_reach(self, reach: float | None) -> bool:
        if self.floor is None:
            return True
        if reach is None:
            return False
        return reach >= self.floor if self.desc else reach <= self.floor

    def learn(self, out: FragmentOutput) -> None:
        """Tighten the floor with a finished shard's exact first order key values (each a
        row that qualifies: k of them at least as good as the k-th best bound the floor)."""
        if out.keys is None or not out.keys.num_rows:
            return
        values = cast(out.keys.column("k0"), pa.float64())
        known = np.concatenate([self._best, array_numpy(values)])
        known = np.sort(known[~np.isnan(known)])
        self._best = (known[::-1] if self.desc else known)[:self.k]   # the k best so far
        kth = kth_best(self._best, self.k, self.desc)
        if kth is None:
            return
        if self.floor is None:
            self.floor = kth
        else:
            self.floor = max(self.floor, kth) if self.desc else min(self.floor, kth)
