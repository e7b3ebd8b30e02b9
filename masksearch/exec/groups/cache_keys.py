"""Keys of groups' aggregated masks in the aggregated-mask cache, and where the cache holds
their entries."""

from __future__ import annotations

import numpy as np

from ...plan.operators import AggregationStats
from ...store.agg_cache import AggregateCache, Located, entry_key, members_key
from .formation import Groups


class CacheKeys:
    """The cache keys of some groups' aggregated masks, worked out for the groups asked
    about only (most queries look at few of many groups); and, per aggregation kind, where
    the cache holds every group's entry (found once per query, with array operations)."""

    def __init__(self, groups: Groups, stats: AggregationStats | None = None):
        self.groups = groups
        self.stats = stats          # told how many groups have stored entries
        self._members: dict[int, str] = {}
        self._located: dict[str, Located] = {}
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def members(self, g: int) -> str:
        """The member part of group ``g``'s keys."""
        key = self._members.get(g)
        if key is None:
            rows = self.groups.member_rows[g]
            key = self._members[g] = members_key(self.groups.mask_ids[rows].tolist())
        return key

    def entry(self, kind: str, g: int) -> str:
        """The key of group ``g``'s ``kind`` (intersect, union, mean) mask."""
        return entry_key(kind, self.members(g))

    def sorted_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Every group's member mask ids, sorted within the group, and the group starts."""
        if self._sorted is None:
            rows = self.groups.member_rows
            ids = self.groups.mask_ids[rows.flat].astype(np.int64)
            group = np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(rows.starts))
            self._sorted = ids[np.lexsort((ids, group))], rows.starts
        return self._sorted

    def located(self, cache: AggregateCache, kind: str) -> Located:
        """Where ``cache`` holds each group's ``kind`` entry (all groups)."""
        found = self._located.get(kind)
        if found is None:
            ids, starts = self.sorted_ids()
            found = self._located[kind] = cache.locate(kind, ids, starts)
            if self.stats is not None:
                self.stats.stored = max(self.stats.stored, int(found.found.sum()))
                self.stats.prepared = max(self.stats.prepared,
                                               int(found.prepared.sum()))
        return found
