"""A snapshot: the database as one committed manifest describes it, which is what a query
reads from its start to its end, whatever commits meanwhile."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from ..errors import StoreError
from .arrow_compute import cast, take
from .manifest import Manifest, SegmentInfo
from .metadata import ARROW_TYPES
from .numpy_arrow import array_numpy, numpy_array
from .overlays import read_deleted, read_meta
from .segments import Segment

REMOTE_READS = 16     # metadata files of remote segments read at once


class SegmentState:
    """A segment as one manifest has it: its metadata (rewritten by UPDATE or ALTER, or as
    ingested) and its deleted rows. Files are read on first use."""

    def __init__(self, segment: Segment, info: SegmentInfo):
        self.segment, self.info = segment, info

    @cached_property
    def meta(self) -> pa.Table:
        """Every row's metadata, deleted rows included."""
        if self.info.meta is None:
            return self.segment.meta
        return read_meta(self.segment.files, self.info.meta, self.info.count)

    @cached_property
    def deleted(self) -> np.ndarray:
        """One bool per row: deleted."""
        if self.info.deleted is None:
            return np.zeros(self.info.count, bool)
        return read_deleted(self.segment.files, self.info.deleted, self.info.count)

    def live_rows(self) -> np.ndarray:
        """The rows not deleted, in order."""
        return np.flatnonzero(~self.deleted)


@dataclass(frozen=True)
class Locations:
    """Where some masks are: per mask, its segment (a position in ``Snapshot.segments``),
    its row there, and its shape."""

    segment: np.ndarray
    row: np.ndarray
    height: np.ndarray
    width: np.ndarray


class Snapshot:
    """The committed segments of one manifest and the metadata of their masks (deleted rows
    are not part of it)."""

    def __init__(self, manifest: Manifest, states: list[SegmentState]):
        self.manifest = manifest
        self.states = states
        self.segments = [s.segment for s in states]     # shared: do not modify
        self._memos: dict[Hashable, dict[Hashable, object]] = {}

    def memo(self, key: Hashable) -> dict[Hashable, object]:
        """A dict kept with the snapshot under ``key``, for values the executor derives
        from its rows alone (they never change: a change makes a new snapshot)."""
        return self._memos.setdefault(key, {})

    @property
    def columns(self) -> dict[str, str]:
        """Every queryable column and its logical type."""
        return dict(self.manifest.columns)

    @cached_property
    def schema(self) -> pa.Schema:
        """The schema of ``table``."""
        return pa.schema([(n, ARROW_TYPES[t]) for n, t in self.columns.items()]
                         + [("_seg", pa.int32()), ("_row", pa.int32())])

    @cached_property
    def table(self) -> pa.Table:
        """All masks' metadata, with ``_seg`` (segment position) and ``_row`` locating each
        mask's pixels."""
        self._fetch_remote_metadata()
        parts = [self._segment_rows(k) for k in range(len(self.states))]
        if not parts:
            return self.schema.empty_table()
        return pa.concat_tables(parts).combine_chunks()

    def _segment_rows(self, k: int) -> pa.Table:
        """The live rows of the segment at position ``k``, as in ``table``."""
        state = self.states[k]
        meta, rows = state.meta, state.live_rows()
        if len(rows) < meta.num_rows:
            meta = take(meta, numpy_array(rows))
        arrays = []
        for name, kind in self.columns.items():
            if name in meta.column_names:
                arrays.append(cast(meta.column(name), ARROW_TYPES[kind]))
            else:
                arrays.append(pa.nulls(meta.num_rows, ARROW_TYPES[kind]))
        arrays.append(numpy_array(np.full(meta.num_rows, k, np.int32)))
        arrays.append(numpy_array(rows.astype(np.int32)))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _fetch_remote_metadata(self) -> None:
        """Segments on object storage: read their descriptions and metadata (and deletion
        vectors) concurrently, since each read waits for the network."""
        remote = [s for s in self.states if not s.segment.files.local]
        if len(remote) > 1:
            with ThreadPoolExecutor(min(REMOTE_READS, len(remote))) as pool:
                list(pool.map(lambda state: (state.meta, state.deleted), remote))

    @cached_property
    def starts(self) -> np.ndarray:
        """Where each segment's rows start in ``table`` (length: segments + 1)."""
        counts = [s.live for s in self.manifest.segments]
        return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)

    def rows_of(self, positions: Sequence[int]) -> pa.Table:
        """The rows of ``table`` that belong to the segments at ``positions``."""
        if len(positions) == len(self.segments) and list(positions) == list(
                range(len(self.segments))):
            return self.table
        if "table" not in self.__dict__:    # a shard on a worker: read only its segments
            parts = [self._segment_rows(int(k)) for k in positions]
            return pa.concat_tables(parts) if parts else self.schema.empty_table()
        parts = [self.table.slice(int(self.starts[k]), int(self.starts[k + 1] - self.starts[k]))
                 for k in positions]
        return pa.concat_tables(parts) if parts else self.table.slice(0, 0)

    @cached_property
    def _by_id(self) -> tuple[np.ndarray, ...]:
        """Sorted mask ids and, in that order, each mask's segment, row, height, width and
        position in ``table``."""
        table = self.table
        ids = array_numpy(table.column("mask_id"))
        order = np.argsort(ids, kind="stable")

        def column(name: str) -> np.ndarray:
            return array_numpy(table.column(name)).astype(np.int64)[order]

        return (ids[order], column("_seg"), column("_row"), column("height"),
                column("width"), order.astype(np.int64))

    def _find(self, mask_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Positions of ``mask_ids`` in the sorted ids; an unknown id is a ``StoreError``."""
        sorted_ids = self._by_id[0]
        wanted = np.asarray(mask_ids, np.int64).reshape(-1)
        if len(sorted_ids):
            k = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
            found = sorted_ids[k] == wanted
        else:
            k, found = np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
        if not found.all():
            raise StoreError(f"mask_id {wanted[~found][0]} does not exist")
        return k

    def locate_many(self, mask_ids: np.ndarray | Sequence[int]) -> Locations:
        """Where the masks ``mask_ids`` are; an unknown id is a ``StoreError`` naming it."""
        k = self._find(mask_ids)
        _, seg, row, height, width, _ = self._by_id
        return Locations(seg[k], row[k], height[k], width[k])

    def positions(self, mask_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """The rows of ``table`` holding ``mask_ids`` (deleted rows are not in it, so a
        segment's rows there are not its physical rows: ``_row`` says those)."""
        return self._by_id[5][self._find(mask_ids)]

    def locate(self, mask_id: int) -> tuple[Segment, int]:
        """The segment and row holding ``mask_id``."""
        where = self.locate_many([mask_id])
        return self.segments[int(where.segment[0])], int(where.row[0])

    def value_spans(self) -> dict[str, tuple[float, float]]:
        """Per pixel dtype, the smallest and largest non-NaN value of the masks that have a
        CHI (the index records both)."""
        spans: dict[str, tuple[float, float]] = {}
        for seg in self.segments:
            overview = seg.index_overview
            stats = overview.stats[overview.built]
            stats = stats[stats[:, 0] <= stats[:, 1]]   # all-NaN masks have no values
            if len(stats):
                lo, hi = spans.get(seg.dtype.name, (np.inf, -np.inf))
                spans[seg.dtype.name] = (min(lo, float(stats[:, 0].min())),
                                         max(hi, float(stats[:, 1].max())))
        return spans
