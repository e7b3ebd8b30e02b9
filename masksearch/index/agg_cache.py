"""CHIs of aggregated masks (intersect / union / mean of a group's masks), cached on disk.

An entry is keyed by the aggregation and the exact member mask ids, so a group whose
membership changes (a new ingest, another WHERE) simply has another key: a stale CHI is
never used. Entries are written in files of their own (written whole with the digest of
their arrays, fsynced, then renamed in), one per batch of new entries, so concurrent readers
never see half a file; each is named by the digest of its bytes, so a damaged file is
reported, never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..store.checksum import load_checked_npz, save_checked_npz
from .chi import Cut, SegmentIndex, build_segment_index, chi_offsets, segment_bounds

DIRECTORY = "aggcache"


def members_key(mask_ids) -> str:
    """The member part of a group's entry keys."""
    return ",".join(map(str, sorted(map(int, mask_ids))))


def entry_key(kind: str, members: str) -> str:
    """The key of an aggregation of the masks named by ``members_key``."""
    return kind + ":" + members


@dataclass(frozen=True)
class _Part:
    index: SegmentIndex
    dtype: np.dtype


class AggregateCache:
    """The cached CHIs of one database; loads its files on first use."""

    def __init__(self, root: Path):
        self.directory = root / DIRECTORY
        self._parts: list[_Part] | None = None
        self._where: dict[str, tuple[int, int]] = {}

    def _load(self) -> None:
        if self._parts is not None:
            return
        self._parts = []
        if not self.directory.exists():
            return
        for path in sorted(self.directory.glob("*.npz")):
            try:
                f = load_checked_npz(path, "cached CHIs")
            except FileNotFoundError:
                continue  # removed by an index rebuild meanwhile
            try:
                self._add(list(f["keys"]), f["heights"], f["widths"], int(f["cell"]),
                          f["edges"], f["counts"], f["eq"], f["stats"],
                          np.dtype(str(f["dtype"])))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise StoreError(f"{path}: cannot read cached CHIs ({e})") from None

    def _add(self, keys, heights, widths, cell, edges, counts, eq, stats, dtype) -> None:
        offsets = chi_offsets(heights, widths, cell, len(edges))
        index = SegmentIndex(cell, edges, counts, offsets, eq, stats, heights, widths,
                             np.ones(len(keys), bool))
        self._parts.append(_Part(index, dtype))
        for row, key in enumerate(keys):
            self._where[str(key)] = (len(self._parts) - 1, row)

    def empty(self) -> bool:
        self._load()
        return not self._where

    def bounds(self, keys: list[str], boxes: np.ndarray, lo: Cut, hi: Cut):
        """(found, lower, upper) for entries ``keys`` over clipped ``boxes`` (M, 4)."""
        self._load()
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

    def add(self, keys: list[str], masks: list[np.ndarray], edges: np.ndarray,
            cell: int) -> int:
        """Build and persist the CHIs of aggregated ``masks``; returns how many were new."""
        self._load()
        todo = [(k, m) for k, m in zip(keys, masks, strict=True) if k not in self._where]
        by_dtype: dict[str, list] = {}
        for k, m in todo:
            by_dtype.setdefault(m.dtype.name, []).append((k, m))
        for dtype, items in by_dtype.items():
            part = build_segment_index([m for _, m in items], edges, cell)
            self.directory.mkdir(exist_ok=True)
            save_checked_npz(self.directory, "", {"keys": np.array([k for k, _ in items]),
                                    "heights": part.heights, "widths": part.widths,
                                    "cell": np.array(cell), "edges": edges,
                                    "counts": part.counts, "eq": part.eq, "stats": part.stats,
                                    "dtype": np.array(dtype)})
            self._add([k for k, _ in items], part.heights, part.widths, cell, edges,
                      part.counts, part.eq, part.stats, np.dtype(dtype))
        return len(todo)
