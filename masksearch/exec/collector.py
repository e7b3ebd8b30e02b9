"""CHIs built while a query runs, kept until the executor saves them.

Two kinds: CHIs of masks lazy indexing had not indexed yet, built from the pixels read for
verification (saved as index deltas of their segments), and CHIs of groups' aggregated
masks (saved in the aggregated-mask cache). Verifying threads add to the collector; the
query's own thread saves it, once at the end of the query and whenever it holds more than
its limit, so memory stays bounded on long runs. A collector that does not persist (a
read-only connection) keeps nothing and saves nothing, and tells verification that no CHI
needs building.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ..index.chi import SegmentIndex
from ..store.agg_cache import AggregateCache
from ..store.segments import Segment


class ChiCollector:
    def __init__(self, segments: Sequence[Segment], cache: AggregateCache | None,
                 limit: int, *, persist: bool = True, prepared: bool = False):
        self.segments = segments
        self.cache = cache
        self.limit = limit
        self.persist = persist      # False: CHIs are neither built for it nor saved
        self.prepared = prepared    # aggregated masks' CHIs saved as prepared ones
        self._lock = threading.Lock()
        self._masks: dict[int, dict[int, SegmentIndex]] = {}   # segment -> row -> CHI
        # (dtype, edges bytes) -> cache key -> CHI of an aggregated mask
        self._aggregates: dict[tuple[str, bytes], dict[str, SegmentIndex]] = {}
        self._held = 0
        self.saved_masks = 0        # CHIs saved so far (new ones only), by kind
        self.saved_aggregates = 0

    def add_mask(self, segment: int, row: int, chi: SegmentIndex) -> None:
        """The CHI of mask ``row`` of the segment at position ``segment``."""
        if not self.persist:
            return
        with self._lock:
            rows = self._masks.setdefault(segment, {})
            if row not in rows:
                rows[row] = chi
                self._held += 1

    def has_mask(self, segment: int, row: int) -> bool:
        """Whether mask ``row`` of the segment at ``segment`` needs no CHI built for this
        collector: it holds one already, or it persists nothing."""
        if not self.persist:
            return True
        with self._lock:
            return row in self._masks.get(segment, {})

    def add_aggregate(self, key: str, chi: SegmentIndex, dtype: np.dtype) -> None:
        """The CHI of an aggregated mask of pixel type ``dtype``, under its cache key."""
        if not self.persist:
            return
        with self._lock:
            kind = self._aggregates.setdefault((dtype.name, chi.edges.tobytes()), {})
            if key not in kind:
                kind[key] = chi
                self._held += 1

    @property
    def full(self) -> bool:
        return self._held > self.limit

    def save(self) -> tuple[int, int]:
        """Persist what was collected; returns how many mask CHIs and aggregated-mask CHIs
        were new. Called from the query's thread only."""
        with self._lock:
            masks, aggregates = self._masks, self._aggregates
            self._masks, self._aggregates, self._held = {}, {}, 0
        built = 0
        for k, by_row in masks.items():
            rows = np.array(sorted(by_row), np.int64)
            chis = [by_row[r] for r in rows.tolist()]
            built += self.segments[k].add_built(
                rows, np.concatenate([c.counts for c in chis]),
                np.concatenate([c.eq for c in chis]), np.concatenate([c.stats for c in chis]))
        cached = 0
        for (dtype, _), by_key in aggregates.items():
            if self.cache is not None:
                cached += self.cache.add_built(list(by_key), list(by_key.values()),
                                               np.dtype(dtype), self.prepared)
        self.saved_masks += built
        self.saved_aggregates += cached
        return built, cached
