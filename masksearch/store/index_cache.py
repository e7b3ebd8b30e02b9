"""The index held in memory: compressed per segment, decoded on demand into a bounded cache.

A segment's CHI counts are cumulative in memory (a bound reads four corners per rectangle),
about 8.6 kB per 224x224 mask at the default settings, against about 1.1 kB compressed
(``chi_file``). Holding every segment decoded would cap a 24 GB machine at a few million
masks. So each segment keeps only its compressed counts (and the small per-mask arrays),
and the decoded counts live in one process-wide cache of ``index_cache_budget()`` bytes,
least recently used out first. Decoding a segment costs a few microseconds a mask; the
queries of a working set that fits the cache never pay it twice.

The budget: ``MASKSEARCH_INDEX_CACHE`` (bytes, or with a unit: ``512MB``, ``2GiB``, ``0``
for no cache), or ``set_index_cache_budget``; by default an eighth of the machine's memory,
at most 2 GiB.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from ..index.chi import SegmentIndex

ENV = "MASKSEARCH_INDEX_CACHE"
MAX_DEFAULT = 2 << 30
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 1 << 10,
          "mib": 1 << 20, "gib": 1 << 30}


def parse_bytes(text: str) -> int:
    """``"512MB"``, ``"2GiB"``, ``"1000000"`` as a number of bytes; ``ValueError`` else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 0, 1000000, 512MB, 2GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def default_budget() -> int:
    """``MASKSEARCH_INDEX_CACHE`` if set, else an eighth of the memory, at most 2 GiB."""
    text = os.environ.get(ENV)
    if text is not None:
        try:
            return parse_bytes(text)
        except ValueError as e:
            raise ValueError(f"{ENV}: {e}") from None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 8 << 30
    return min(MAX_DEFAULT, memory // 8)


def index_nbytes(index: SegmentIndex) -> int:
    """Bytes of a decoded index's arrays."""
    return sum(a.nbytes for a in (index.counts, index.offsets, index.eq, index.stats,
                                  index.heights, index.widths, index.built, index.edges))


class IndexCache:
    """Decoded indexes by key, least recently used evicted first, within ``budget`` bytes.
    An index larger than the whole budget is decoded for its caller and not kept."""

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.decoded = 0       # decodes so far (what a benchmark or a test watches)
        self._entries: OrderedDict[Hashable, tuple[SegmentIndex, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, decode: Callable[[], SegmentIndex]) -> SegmentIndex:
        """The index under ``key``, decoded now if not held."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]
        index = decode()       # outside the lock: other segments decode meanwhile
        size = index_nbytes(index)
        with self._lock:
            self.decoded += 1
            if key not in self._entries and size <= self.budget:
                self._entries[key] = (index, size)
                self.used += size
                self._evict()
        return index

    def holds(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def set_budget(self, budget: int) -> None:
        with self._lock:
            self.budget = budget
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.used = 0

    def _evict(self) -> None:
        while self.used > self.budget and self._entries:
            _, (_, size) = self._entries.popitem(last=False)
            self.used -= size


_CACHE: IndexCache | None = None


def index_cache() -> IndexCache:
    """The process's cache (made on first use, with ``default_budget()``)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = IndexCache(default_budget())
    return _CACHE


def set_index_cache_budget(budget: int | str) -> None:
    """Bytes of decoded index the process keeps (``"512MB"`` and the like accepted)."""
    size = parse_bytes(budget) if isinstance(budget, str) else int(budget)
    if size < 0:
        raise ValueError(f"the index cache budget cannot be negative ({size})")
    index_cache().set_budget(size)


@dataclass(frozen=True)
class ResidentIndex:
    """A full segment index as held in memory: compressed counts plus the small per-mask
    arrays (``eq``, ``stats``, shapes); ``decoded()`` gives the ``SegmentIndex``."""

    key: Hashable
    cell: int
    edges: np.ndarray
    offsets: np.ndarray
    eq: np.ndarray
    stats: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    built: np.ndarray        # all True: a full index
    counts_nbytes: int
    decode_counts: Callable[[], np.ndarray]

    def decoded(self) -> SegmentIndex:
        """The decoded index, from the cache or decoded now."""
        return index_cache().get(self.key, self._decode)

    def _decode(self) -> SegmentIndex:
        return SegmentIndex(self.cell, self.edges, self.decode_counts(), self.offsets,
                            self.eq, self.stats, self.heights, self.widths, self.built)

    def decoded_nbytes(self) -> int:
        """What ``decoded()`` adds to the cache, without decoding."""
        n = len(self.heights)
        return (self.counts_nbytes + self.offsets.nbytes + self.eq.nbytes
                + self.stats.nbytes + 2 * 8 * n + n + self.edges.nbytes)

    @property
    def cached(self) -> bool:
        return index_cache().holds(self.key)
