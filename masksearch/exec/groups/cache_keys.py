"""Keys of groups' aggregated masks in the aggregated-mask cache."""

from __future__ import annotations

from ...store.agg_cache import entry_key, members_key
from .formation import Groups


class CacheKeys:
    """The cache keys of some groups' aggregated masks, worked out for the groups asked
    about only (most queries look at few of many groups)."""

    def __init__(self, groups: Groups):
        self.groups = groups
        self._members: dict[int, str] = {}

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
