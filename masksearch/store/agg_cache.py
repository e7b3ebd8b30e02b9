"""CHIs of aggregated masks (intersect / union / mean of a group's masks), cached on disk.

An entry is keyed by the aggregation and the exact member mask ids, so a group whose
membership changes (a new ingest, another WHERE) simply has another key: a stale CHI is
never used. Entries are written in files of their own (written whole with the digest of
their arrays, fsynced, then renamed in), one per batch of new entries, so concurrent readers
never see half a file; each is named by the digest of its bytes, so a damaged file is
reported, never used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import StoreError
from ..index.chi import REFINE_CHUNK, SegmentIndex, bound_tasks, chi_offsets, segment_bounds
from ..parallel import run_sized
from ..ranges import Cut
from .checksum import load_checked_npz, save_checked_npz
from .durable import remove_file
from .files import Files, as_files

DIRECTORY = "aggcache"
MAX_PARTS = 8    # in-memory parts (files) before they are merged
_BOUNDS_MEMO = 8         # answers of ``located_bounds`` kept
_GROUPS_MEMO = 4          # grouped queries' exact counts kept (``remember_groups``)
_COUNTS_MEMO = 4096      # exact counts of open entries kept (``remember_count``)
_ON_THIS_THREAD = 4096   # bounds of at most this many entries are worked out on one thread
PREPARED = "prepared-"   # name prefix of the files ``Database.prepare_aggregates`` writes


def members_key(mask_ids: Iterable[int]) -> str:
    """The member part of a group's entry keys."""
    return ",".join(map(str, sorted(map(int, mask_ids))))


def entry_key(kind: str, members: str) -> str:
    """The key of an aggregation of the masks named by ``members_key``."""
    return kind + ":" + members


@dataclass(frozen=True)
class _Part:
    index: SegmentIndex
    dtype: np.dtype


@dataclass(frozen=True)
class _Lookup:
    """The entries of one aggregation kind by their members, for finding many groups' entries
    with array operations (no key string per group): entries sorted by their smallest member
    id (``first``), each one's member ids (sorted) in ``members[starts[e]:starts[e + 1]]``."""

    first: NDArray[np.int64]
    starts: NDArray[np.int64]
    sizes: NDArray[np.int64]
    members: NDArray[np.int64]
    part: NDArray[np.int64]
    row: NDArray[np.int64]
    unique: NDArray[np.bool_]       # no other entry has the same smallest member
    prepared: NDArray[np.bool_]     # written by ``prepare_aggregates``

    @classmethod
    def of(cls, items: list[tuple[str, tuple[int, int]]], prepared: set[str]) -> _Lookup:
        keys = [k for k, _ in items]
        lists = [k.partition(":")[2] for k in keys]
        sizes = np.array([m.count(",") + 1 for m in lists], np.int64)
        members = np.array(",".join(lists).split(","), np.int64) if lists \
            else np.zeros(0, np.int64)
        starts = np.zeros(len(keys) + 1, np.int64)
        np.cumsum(sizes, out=starts[1:])
        first = members[starts[:-1]]
        order = np.argsort(first, kind="stable")
        first = first[order]
        unique = np.ones(len(first), bool)
        same = first[1:] == first[:-1]
        unique[1:] &= ~same
        unique[:-1] &= ~same
        where = np.array([w for _, w in items], np.int64).reshape(-1, 2)[order]
        return cls(first, starts[:-1][order], sizes[order], members, where[:, 0], where[:, 1], unique,
                   np.array([k in prepared for k in keys], bool)[order] if prepared
                   else np.zeros(len(keys), bool))


@dataclass(frozen=True)
class Located:
    """Where some groups' entries are: ``found`` per group, and for those found the part and
    row of the entry, and whether it was prepared (``prepare_aggregates``)."""

    found: NDArray[np.bool_]
    part: NDArray[np.int64]
    row: NDArray[np.int64]
    prepared: NDArray[np.bool_]

    @classmethod
    def none(cls, n: int) -> Located:
        return cls(np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64),
                   np.zeros(n, bool))

    def take(self, idx: NDArray[np.int64]) -> Located:
        return Located(self.found[idx], self.part[idx], self.row[idx], self.prepared[idx])


class AggregateCache:
    """The cached CHIs of one database; loads its files on first use."""

    def __init__(self, root: Path | Files) -> None:
        self.files = as_files(root).child(DIRECTORY)
        self._parts: list[_Part] | None = None
        self._where: dict[str, tuple[int, int]] = {}
        self._prepared: set[str] = set()       # keys of entries from prepared files
        self._lookups: dict[str, _Lookup] = {}
        self._last: dict[str, tuple[bytes, bytes, Located]] = {}   # kind -> last located
        self._bounds_memo: dict[tuple, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}
        # Exact counts of aggregated masks whose CHIs leave them open (pixels on a bin edge
        # that is also a cut), counted from the pixels: (entry key, box, lo, hi) -> count.
        # Valid as long as the entry's members exist (mask ids are never reused).
        self._counts: dict[tuple[str, tuple[int, ...], Cut, Cut], int] = {}
        # What the executor worked out for a grouped query's member rows whose aggregates
        # the stored CHIs settle (exec/groups/exact_path.py), by those rows: kept across
        # queries like the counts above, a few at a time.
        self._groups: dict[tuple, object] = {}

    @property
    def directory(self) -> Path:
        """The cache's local folder (what writes need)."""
        return self.files.path

    def _load(self) -> None:
        if self._parts is not None:
            return
        self._parts = []
        for name in self.files.names("*.npz"):
            try:
                f = self.files.read_checked_npz(name, "cached CHIs")
            except FileNotFoundError:
                continue  # removed by an index rebuild meanwhile
            try:
                self._add(list(f["keys"]), _index(int(f["cell"]), f["edges"], {
                    name: f[name] for name in _FIELDS}), np.dtype(str(f["dtype"])),
                    prepared=name.startswith(PREPARED))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise StoreError(f"{self.files.label(name)}: cannot read cached CHIs "
                                 f"({e})") from None
        self._consolidate()

    def _consolidate(self) -> None:
        """Merge the parts (one per file) that share pixel type, cell size, edges and count
        type into one index in memory: bounds then take one kernel call per kind of part,
        not one per file (a file is written per query that verified groups)."""
        assert self._parts is not None  # loaded
        kinds: dict[tuple[str, int, bytes, str], list[int]] = {}
        for p, part in enumerate(self._parts):
            ix = part.index
            kinds.setdefault((part.dtype.str, ix.cell, ix.edges.tobytes(), ix.counts.dtype.str),
                             []).append(p)
        if all(len(ps) == 1 for ps in kinds.values()):
            return
        parts: list[_Part] = []
        moved: dict[int, tuple[int, int]] = {}
        for ps in kinds.values():
            merged = [self._parts[p].index for p in ps]
            parts.append(_Part(_concatenated(merged), self._parts[ps[0]].dtype))
            start = 0
            for p, ix in zip(ps, merged, strict=True):
                moved[p] = (len(parts) - 1, start)
                start += len(ix.heights)
        self._where = {k: (moved[p][0], moved[p][1] + row)
                       for k, (p, row) in self._where.items()}
        self._parts = parts
        self._lookups, self._last, self._bounds_memo = {}, {}, {}

    def _add(self, keys: list[str], index: SegmentIndex, dtype: np.dtype,
             prepared: bool = False) -> None:
        assert self._parts is not None  # loaded
        self._parts.append(_Part(index, dtype))
        for row, key in enumerate(keys):
            self._where[str(key)] = (len(self._parts) - 1, row)
        if prepared:
            self._prepared.update(map(str, keys))
        self._lookups, self._last, self._bounds_memo = {}, {}, {}

    def _lookup(self, kind: str) -> _Lookup:
        table = self._lookups.get(kind)
        if table is None:
            prefix = kind + ":"
            items = [(k, w) for k, w in self._where.items()
                     if k.startswith(prefix) and len(k) > len(prefix)]
            table = self._lookups[kind] = _Lookup.of(items, self._prepared)
        return table

    def locate(self, kind: str, ids: NDArray[np.int64], starts: NDArray[np.int64]) -> Located:
        """Where the entries of groups' ``kind`` masks are. The groups' member mask ids are
        ``ids[starts[g]:starts[g + 1]]``, each group's sorted ascending. A group is found
        only if an entry has exactly its members; array operations throughout (a key string
        only for the rare groups whose smallest member starts several entries)."""
        self._load()
        key, at = ids.tobytes(), starts.tobytes()
        last = self._last.get(kind)
        if last is not None and last[0] == key and last[1] == at:
            return last[2]              # the groups of the last query, asked again
        out = self._locate(kind, ids, starts)
        self._last[kind] = (key, at, out)
        return out

    def _locate(self, kind: str, ids: NDArray[np.int64], starts: NDArray[np.int64]) -> Located:
        n = len(starts) - 1
        out = Located.none(n)
        table = self._lookup(kind)
        if not n or not len(table.first):
            return out
        sizes = starts[1:] - starts[:-1]
        filled = sizes > 0
        first = np.full(n, -1, np.int64)
        first[filled] = ids[starts[:-1][filled]]
        pos = np.minimum(np.searchsorted(table.first, first), len(table.first) - 1)
        starting = filled & (table.first[pos] == first)
        # Several entries start with the same member (groups that gained or lost members
        # since): those groups are looked up by key.
        many = starting & ~table.unique[pos]
        cand = starting & table.unique[pos] & (table.sizes[pos] == sizes)
        c = np.flatnonzero(cand)
        if len(c):
            c_sizes = sizes[c]
            c_starts = np.zeros(len(c), np.int64)
            np.cumsum(c_sizes[:-1], out=c_starts[1:])
            within = np.arange(int(c_sizes.sum()), dtype=np.int64) - np.repeat(c_starts, c_sizes)
            same = ids[np.repeat(starts[c], c_sizes) + within] == \
                table.members[np.repeat(table.starts[pos[c]], c_sizes) + within]
            ok = np.logical_and.reduceat(same, c_starts)
            hit, at = c[ok], pos[c[ok]]
            out.found[hit] = True
            out.part[hit], out.row[hit] = table.part[at], table.row[at]
            out.prepared[hit] = table.prepared[at]
        for g in np.flatnonzero(many).tolist():
            key = entry_key(kind, members_key(ids[starts[g]:starts[g + 1]].tolist()))
            w = self._where.get(key)
            if w is not None:
                out.found[g] = True
                out.part[g], out.row[g] = w
                out.prepared[g] = key in self._prepared
        return out

    def located_bounds(self, located: Located, boxes: np.ndarray, lo: Cut, hi: Cut,
                       ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(lower, upper) over clipped ``boxes`` (M, 4) for the entries ``located`` (zeros
        where not found)."""
        self._load()
        assert self._parts is not None  # loaded
        # Repeated queries ask for the same entries' bounds: the last few answers are kept
        # (entries never change; the memo is cleared whenever parts are added or merged).
        memo = (located.found.tobytes(), located.part.tobytes(), located.row.tobytes(),
                np.ascontiguousarray(boxes, np.int64).tobytes(), lo, hi)
        hit = self._bounds_memo.get(memo)
        if hit is not None:
            return hit[0].copy(), hit[1].copy()
        lower, upper = self._located_bounds(located, boxes, lo, hi)
        if len(self._bounds_memo) >= _BOUNDS_MEMO:
            self._bounds_memo.clear()     # one call: safe with queries on other threads
        self._bounds_memo[memo] = (lower.copy(), upper.copy())
        return lower, upper

    def _located_bounds(self, located: Located, boxes: np.ndarray, lo: Cut, hi: Cut,
                        ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        assert self._parts is not None  # loaded
        n = len(located.found)
        lower = np.zeros(n, np.int64)
        upper = np.zeros(n, np.int64)
        tasks = []
        for p in np.unique(located.part[located.found]).tolist():
            js = np.flatnonzero(located.found & (located.part == p))
            part = self._parts[p]
            tasks += bound_tasks(part.index, part.dtype, located.row[js], boxes[js],
                                 [(lo, hi)], True, [(lower, upper)], js)
        if sum(size for _, size in tasks) <= _ON_THIS_THREAD:
            for task, _ in tasks:     # a few thousand groups: threads would cost more
                task()
        else:
            run_sized(tasks, REFINE_CHUNK)
        return lower, upper

    def exact_count(self, key: str, box: tuple[int, ...], lo: Cut, hi: Cut) -> int | None:
        """The count of entry ``key``'s mask in ``box`` and (lo, hi] remembered by
        ``remember_count``, or None."""
        return self._counts.get((key, box, lo, hi))

    def remember_count(self, key: str, box: tuple[int, ...], lo: Cut, hi: Cut,
                       count: int) -> None:
        """Keep the exact count (from the pixels) of a mask whose CHI leaves it open."""
        if len(self._counts) >= _COUNTS_MEMO:
            self._counts = {}
        self._counts[(key, box, lo, hi)] = count

    def remembered_groups(self, key: tuple) -> object | None:
        """What ``remember_groups`` kept under ``key``, or None."""
        return self._groups.get(key)

    def remember_groups(self, key: tuple, value: object) -> None:
        if len(self._groups) >= _GROUPS_MEMO:
            self._groups = {}
        self._groups[key] = value

    @property
    def parts(self) -> int:
        """How many in-memory parts bounds look through (merged past ``MAX_PARTS``)."""
        self._load()
        return len(self._parts or ())

    def __contains__(self, key: str) -> bool:
        self._load()
        return key in self._where

    def empty(self) -> bool:
        self._load()
        return not self._where

    def prepared_entries(self) -> dict[str, int]:
        """How many prepared entries (``prepare_aggregates``) there are, by kind."""
        self._load()
        out: dict[str, int] = {}
        for key in self._prepared:
            kind = key.partition(":")[0]
            out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))

    def reload(self) -> None:
        """Forget what was loaded: the next use reads the files again (another connection
        may have prepared aggregates meanwhile)."""
        self._parts, self._where, self._prepared, self._lookups = None, {}, set(), {}
        self._last, self._bounds_memo, self._counts, self._groups = {}, {}, {}, {}

    def bounds(self, keys: list[str], boxes: np.ndarray, lo: Cut, hi: Cut,
               ) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64]]:
        """(found, lower, upper) for entries ``keys`` over clipped ``boxes`` (M, 4)."""
        self._load()
        assert self._parts is not None  # loaded
        where = [self._where.get(k) for k in keys]
        found = np.array([w is not None for w in where], dtype=bool)
        lower = np.zeros(len(keys), np.int64)
        upper = np.zeros(len(keys), np.int64)
        by_part: dict[int, tuple[list[int], list[int]]] = {}
        for j, w in enumerate(where):
            if w is not None:
                js, rows = by_part.setdefault(w[0], ([], []))
                js.append(j)
                rows.append(w[1])
        for p, (js, rows) in by_part.items():
            part = self._parts[p]
            lo_b, hi_b = segment_bounds(part.index, part.dtype, np.array(rows, np.int64),
                                        boxes[js], lo, hi)
            lower[js], upper[js] = lo_b, hi_b
        return found, lower, upper

    def add_built(self, keys: list[str], parts: list[SegmentIndex], dtype: np.dtype,
                  prepared: bool = False) -> int:
        """Persist CHIs built elsewhere (``parts`` hold them in the order of ``keys``, all
        of aggregated masks of ``dtype`` with one cell size and edges), in one file (named
        as prepared ones if ``prepared``); returns how many were new."""
        self._load()
        if not parts:
            return 0
        index = _concatenated(parts)
        new = np.array([k not in self._where for k in keys], bool)
        new &= ~_repeated(keys)
        if not new.any():
            return 0
        if not new.all():
            index = _subset(index, new)
            keys = [k for k, n in zip(keys, new, strict=True) if n]
        self.directory.mkdir(exist_ok=True)
        _save(self.directory, keys, index, np.dtype(dtype), PREPARED if prepared else "")
        self._add(keys, index, np.dtype(dtype), prepared)
        assert self._parts is not None  # loaded
        if len(self._parts) > MAX_PARTS:
            self._consolidate()
        return len(keys)


    def prune(self, alive_ids: np.ndarray) -> int:
        """Remove the entries of groups with a member not in ``alive_ids`` (sorted): no
        group can have those members any more (mask ids are never reused). Each file with
        such entries is replaced by one without them. Returns how many were removed; the
        caller holds the writer lock."""
        removed = 0
        for path in sorted(self.directory.glob("*.npz")) if self.directory.is_dir() else []:
            try:
                f = load_checked_npz(path, "cached CHIs")
            except (FileNotFoundError, StoreError):
                continue   # damaged files are for ``check`` to report
            keys = [str(k) for k in f["keys"]]
            keep = np.array([_members_alive(k, alive_ids) for k in keys], bool)
            if keep.all():
                continue
            if keep.any():
                index = _subset(_index(int(f["cell"]), f["edges"],
                                       {name: f[name] for name in _FIELDS}), keep)
                _save(self.directory, [k for k, x in zip(keys, keep, strict=True) if x],
                      index, np.dtype(str(f["dtype"])),
                      PREPARED if path.name.startswith(PREPARED) else "")
            remove_file(path)
            removed += int((~keep).sum())
        self._parts, self._where, self._prepared, self._lookups = None, {}, set(), {}
        self._last, self._bounds_memo, self._counts, self._groups = {}, {}, {}, {}
        return removed


_FIELDS = ("heights", "widths", "counts", "eq", "stats")    # a CHI's arrays, as saved


def _save(directory: Path, keys: list[str], index: SegmentIndex, dtype: np.dtype,
          prefix: str = "") -> None:
    save_checked_npz(directory, prefix, {
        "keys": np.array(keys), "cell": np.array(index.cell), "edges": index.edges,
        "dtype": np.array(dtype.name), **{name: getattr(index, name) for name in _FIELDS}})


def _subset(index: SegmentIndex, keep: NDArray[np.bool_]) -> SegmentIndex:
    """The CHIs of ``index`` where ``keep``."""
    offsets = index.offsets
    spans = [np.arange(offsets[j], offsets[j + 1]) for j in np.flatnonzero(keep)]
    fields = {name: getattr(index, name)[keep] for name in _FIELDS if name != "counts"}
    fields["counts"] = index.counts[np.concatenate(spans)]
    return _index(index.cell, index.edges, fields)


def _members_alive(key: str, alive_ids: np.ndarray) -> bool:
    """Whether every member of entry ``key`` (``kind:id,id,...``) is in ``alive_ids``."""
    members = np.array(key.partition(":")[2].split(","), np.int64)
    k = np.minimum(np.searchsorted(alive_ids, members), len(alive_ids) - 1)
    return bool(len(alive_ids)) and bool((alive_ids[k] == members).all())


def _index(cell: int, edges: np.ndarray, fields: dict[str, np.ndarray]) -> SegmentIndex:
    """The index of CHIs given by their arrays (``_FIELDS``), every one built."""
    offsets = chi_offsets(fields["heights"], fields["widths"], cell, len(edges))
    return SegmentIndex(cell, edges, fields["counts"], offsets, fields["eq"], fields["stats"],
                        fields["heights"], fields["widths"],
                        np.ones(len(fields["heights"]), bool))


def _concatenated(indexes: list[SegmentIndex]) -> SegmentIndex:
    """One index of the CHIs of ``indexes`` (one cell size and edges), one after another."""
    return _index(indexes[0].cell, indexes[0].edges, {
        name: np.concatenate([getattr(ix, name) for ix in indexes]) for name in _FIELDS})


def _repeated(keys: list[str]) -> NDArray[np.bool_]:
    """True for every key that occurs earlier in ``keys``."""
    seen: set[str] = set()
    out = np.zeros(len(keys), bool)
    for j, k in enumerate(keys):
        out[j] = k in seen
        seen.add(k)
    return out
