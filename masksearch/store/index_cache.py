"""The index held in memory: compressed per segment, decoded on demand into a bounded cache.

A segment's CHI counts are cumulative in memory (a bound reads four corners per rectangle),
about 8.6 kB per 224x224 mask at the default settings, against about 1.1 kB compressed
(``chi_file``). Holding every segment decoded would cap a 24 GB machine at about two million
masks. So each segment keeps only its compressed counts and the small per-mask arrays
(``ResidentIndex``), and the decoded counts live in one process-wide cache, evicting the
least recently used. Decoding costs microseconds a mask, so a working set that fits the cache
never pays it twice.

The budget: ``MASKSEARCH_INDEX_CACHE`` (bytes, or with a unit: ``512MB``, ``2GiB``; ``0``
for no cache) or ``set_index_cache_budget``. By default it adapts: 40% of the machine's
memory, less what would take the decoded and the held (compressed) index together past 75%
of it. On 24 GB, a million 224x224 masks are all held decoded (8.7 GB); ten million hold
12.6 GB compressed and keep 5.4 GB decoded.

A query's bound pass only evicts what it has not used itself (``new_pass``), so a database
larger than the cache keeps a fixed part cached rather than evicting, segment after segment,
the one the next pass needs first.

The cache also keeps, in room the decoded indexes leave spare, a segment's counts transposed
into *corner planes* (``index.chi.corner_planes``): the coarse bounds of one box over most
of a segment read them in order. They are made on the third pass that asks for them, only
where they fit without evicting anything, and are evicted like the rest.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..index.chi import SegmentIndex, corner_planes, one_shape

ENV = "MASKSEARCH_INDEX_CACHE"
CACHE_SHARE = 0.40     # of the machine's memory, decoded
INDEX_SHARE = 0.75     # of the machine's memory, decoded and held together
# Passes that ask for a segment's corner planes before they are made (making them costs
# ~11 ms per 1,000 224x224 masks, mostly first touches of new memory: what tens of passes
# gain): a process that queries once or twice, a CLI call, never pays it.
PLANES_ASKED = 3
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 1 << 10,
          "mib": 1 << 20, "gib": 1 << 30}


def parse_bytes(text: str) -> int:
    """``"512MB"``, ``"2GiB"``, ``"1000000"`` as a number of bytes; ``ValueError`` else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 0, 1000000, 512MB, 2GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


def configured_budget() -> int | None:
    """``MASKSEARCH_INDEX_CACHE`` in bytes, None when unset (the adaptive default)."""
    text = os.environ.get(ENV, "")
    if not text.strip():
        return None
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise ValueError(f"{ENV}: {e}") from None


def index_nbytes(index: SegmentIndex) -> int:
    """Bytes of a decoded index's arrays."""
    return sum(a.nbytes for a in (index.counts, index.offsets, index.eq, index.stats,
                                  index.heights, index.widths, index.built, index.edges))


@dataclass
class _Entry:
    index: SegmentIndex | np.ndarray     # a decoded index, or corner planes
    size: int
    used_in: int        # the pass that last used it


class IndexCache:
    """Decoded indexes by key, least recently used evicted first, within the budget: fixed
    (``budget``) or, with None, adapted to the index held (see the module's docstring). An
    index that does not fit is decoded for its caller and not kept."""

    def __init__(self, budget: int | None, memory: int | None = None):
        self.fixed = budget
        self.memory = machine_memory() if memory is None else memory
        self.held = 0          # bytes of the compressed indexes alive (``track_held``)
        self.used = 0
        self.decoded = 0       # decodes so far (what a benchmark or a test watches)
        self.passes = 0
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._asked: dict[Hashable, int] = {}      # by ``get_spare``, not made yet
        self._lock = threading.Lock()

    @property
    def budget(self) -> int:
        """Bytes of decoded index kept, now."""
        if self.fixed is not None:
            return self.fixed
        return max(0, min(int(CACHE_SHARE * self.memory),
                          int(INDEX_SHARE * self.memory) - self.held))

    def new_pass(self) -> None:
        """A new pass over the index begins: entries the passes before used may go."""
        with self._lock:
            self.passes += 1

    def get(self, key: Hashable, decode: Callable[[], SegmentIndex]) -> SegmentIndex:
        """The index under ``key``, decoded now if not held."""
        hit = self._hit(key)
        if hit is not None:
            assert isinstance(hit, SegmentIndex)
            return hit
        index = decode()       # outside the lock: other segments decode meanwhile
        size = index_nbytes(index)
        with self._lock:
            self.decoded += 1
            if key not in self._entries and self._make_room(size):
                self._entries[key] = _Entry(index, size, self.passes)
                self.used += size
        return index

    def _hit(self, key: Hashable) -> SegmentIndex | np.ndarray | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            hit.used_in = self.passes
            return hit.index

    def get_spare(self, key: Hashable, make: Callable[[], np.ndarray], size: int,
                  asks: int = 1) -> np.ndarray | None:
        """The array under ``key``; made now (``size`` bytes) on the ``asks``-th time it is
        asked for, and only if it fits in the room the cache has spare, without evicting
        anything; else None."""
        hit = self._hit(key)
        if hit is not None:
            assert isinstance(hit, np.ndarray)
            return hit
        with self._lock:
            if self.used + size > self.budget:
                return None
            self._asked[key] = self._asked.get(key, 0) + 1
            if self._asked[key] < asks:
                return None
            del self._asked[key]
        made = make()
        with self._lock:
            if key not in self._entries and self.used + size <= self.budget:
                self._entries[key] = _Entry(made, size, self.passes)
                self.used += size
        return made

    def _make_room(self, size: int) -> bool:
        """Evict, oldest first, entries this pass has not used until ``size`` fits."""
        budget = self.budget
        if size > budget:
            return False
        while self.used + size > budget:
            key, oldest = next(iter(self._entries.items()), (None, None))
            if oldest is None or oldest.used_in == self.passes:
                return False
            del self._entries[key]
            self.used -= oldest.size
        return True

    def holds(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def track_held(self, owner: object, nbytes: int) -> None:
        """Count ``nbytes`` of held index for as long as ``owner`` lives."""
        with self._lock:
            self.held += nbytes
        weakref.finalize(owner, self._release_held, nbytes)

    def _release_held(self, nbytes: int) -> None:
        with self._lock:
            self.held -= nbytes

    def set_budget(self, budget: int | None) -> None:
        """A fixed budget in bytes; None: the adaptive default."""
        with self._lock:
            self.fixed = budget
            self.shrink()

    def shrink(self) -> None:
        """Evict, oldest first, until the cache is within its budget (lock held)."""
        budget = self.budget
        while self.used > budget and self._entries:
            _, oldest = self._entries.popitem(last=False)
            self.used -= oldest.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._asked.clear()
            self.used = 0


_CACHE: IndexCache | None = None


def index_cache() -> IndexCache:
    """The process's cache (made on first use, with ``MASKSEARCH_INDEX_CACHE`` if set)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = IndexCache(configured_budget())
    return _CACHE


def set_index_cache_budget(budget: int | str | None) -> None:
    """Bytes of decoded index the process keeps (``"512MB"`` and the like accepted; None:
    the adaptive default)."""
    size = parse_bytes(budget) if isinstance(budget, str) else budget
    if size is not None and size < 0:
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
    counts_nbytes: int       # decoded
    compressed_nbytes: int   # held
    decode_counts: Callable[[], np.ndarray]

    def decoded(self) -> SegmentIndex:
        """The decoded index, from the cache or decoded now."""
        return index_cache().get(self.key, self._decode)

    def _decode(self) -> SegmentIndex:
        return SegmentIndex(self.cell, self.edges, self.decode_counts(), self.offsets,
                            self.eq, self.stats, self.heights, self.widths, self.built)

    @cached_property
    def one_shape(self) -> bool:
        """Whether the segment's masks all have one shape (corner planes are for them)."""
        return one_shape(self.heights, self.widths)

    @property
    def planes_cached(self) -> bool:
        return index_cache().holds((self.key, "planes"))

    def planes(self, index: SegmentIndex) -> np.ndarray | None:
        """The corner planes of this segment's decoded ``index`` (``index.chi.
        corner_planes``), from the cache or made now if the cache has room to spare; None
        if it has not, or the masks have several shapes."""
        if not self.one_shape:
            return None
        return index_cache().get_spare((self.key, "planes"), lambda: corner_planes(index),
                                       self.counts_nbytes, PLANES_ASKED)

    def decoded_nbytes(self) -> int:
        """What ``decoded()`` adds to the cache, without decoding."""
        n = len(self.heights)
        return (self.counts_nbytes + self.offsets.nbytes + self.eq.nbytes
                + self.stats.nbytes + 2 * 8 * n + n + self.edges.nbytes)

    def __post_init__(self) -> None:
        index_cache().track_held(self, self.held_nbytes())

    def held_nbytes(self) -> int:
        """What this object holds: the compressed counts and the small arrays."""
        return (self.compressed_nbytes + self.offsets.nbytes + self.eq.nbytes
                + self.stats.nbytes + self.heights.nbytes + self.widths.nbytes
                + self.built.nbytes + self.edges.nbytes)

    @property
    def cached(self) -> bool:
        return index_cache().holds(self.key)
