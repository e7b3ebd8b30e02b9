"""Groups of rows (GROUP BY, or one group for aggregates without it) as units of evaluation.

``GroupBatch`` plays the part ``Batch`` plays for rows: its ``rows`` are the group keys, its
terms are the query's aggregates, with bounds from the member rows' bounds and exact values
from the member rows' exact values.
"""

from __future__ import annotations

import threading
from functools import cached_property

import numpy as np
import pyarrow as pa

from ..errors import QueryError
from ..index.chi import build_segment_index
from ..kernels.count_kernels import count_in_range
from ..lang import ast
from ..parallel import chunks_in_order, spread_chunk
from ..store.agg_cache import entry_key, members_key
from . import control
from .aggregate import aggregate_bounds, exact_aggregate
from .batch import Batch
from .exact import evaluate, located
from .intervals import interval
from .mask_aggregate import (
    aggregate_pixels,
    mask_aggregate_bounds,
    mask_aggregate_cell_bounds,
)
from .regions import box_areas, clip_boxes

# Per-cell bounds are worked out for chunks of groups holding at most this many member cells
# (about 100 bytes each while in use), so memory does not grow with the database.
MEMBER_CELLS = 1 << 18
AGGREGATE_CHIS_HELD = 4096   # CHIs of aggregated masks (~10 kB each) held before they are saved
# Building an aggregated mask's CHI costs about as much as verifying its group. The cache is
# for the groups that top-k and HAVING queries keep coming back to, so a query caches at most
# this many groups (or 2% of them): a query that has to verify every group stays within a
# few percent of the brute force.
CACHED_GROUPS = 128


class MemberRows:
    """Per group, the indices of its member rows: one flat array and each group's start in
    it (thousands of groups: no Python object per group)."""

    def __init__(self, flat: np.ndarray, starts: np.ndarray):
        self.flat = flat.astype(np.int64, copy=False)
        self.starts = starts.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, g) -> np.ndarray:
        return self.flat[self.starts[g]:self.starts[g + 1]]

    def sizes(self, groups: np.ndarray) -> np.ndarray:
        return self.starts[groups + 1] - self.starts[groups]

    def select(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The member rows of ``groups``, one after the other, and each one's start."""
        groups = np.asarray(groups, np.int64)
        if len(groups) == len(self) and (groups == np.arange(len(self))).all():
            return self.flat, self.starts
        sizes = self.sizes(groups)
        starts = np.zeros(len(groups) + 1, np.int64)
        np.cumsum(sizes, out=starts[1:])
        at = np.repeat(self.starts[groups] - starts[:-1], sizes) + np.arange(starts[-1])
        return self.flat[at], starts

    def take(self, groups: np.ndarray) -> MemberRows:
        return MemberRows(*self.select(groups))


def form_groups(members: Batch, keys: tuple[ast.Column, ...]) -> tuple[pa.Table, MemberRows]:
    """The distinct key values of ``members`` and, per group, its member row indices."""
    n = members.rows.num_rows
    if not keys:
        # Aggregates without GROUP BY: one group of every row.
        return pa.table({"_group": [0]}), MemberRows(np.arange(n), np.array([0, n]))
    names = [k.name for k in keys]
    table = members.rows.select(names).append_column("_i", pa.array(np.arange(n)))
    grouped = table.group_by(names, use_threads=False).aggregate([("_i", "list")])
    key_table = grouped.select(names)
    key_table = key_table.append_column("_group", pa.array(np.arange(key_table.num_rows)))
    if not grouped.num_rows:
        return key_table, MemberRows(np.zeros(0, np.int64), np.zeros(1, np.int64))
    column = grouped.column("_i_list").combine_chunks()
    offsets = column.offsets.to_numpy()
    return key_table, MemberRows(column.flatten().to_numpy(), offsets - offsets[0])


class GroupBatch:
    """Groups under evaluation. Implements ``exact.Env`` for group-level expressions."""

    # True while the groups carry trivial bounds only (see ``bound_coarse``).
    coarse_pending = False

    def __init__(self, keys: pa.Table, member_rows: MemberRows, members: Batch, query):
        self.rows = keys
        self.members = members
        self.member_rows = member_rows
        self.query = query
        self.aggregates = list(query.group_terms)   # aggregates and per-group CP terms
        n, g = len(member_rows), len(self.aggregates)
        self.lower = np.zeros((n, g))
        self.upper = np.zeros((n, g))
        self.may_null = np.zeros((n, g), bool)
        self.must_null = np.zeros((n, g), bool)
        self.may_nan = np.zeros((n, g), bool)
        self.exact = np.empty((n, g), dtype=object)
        self.known = np.zeros((n, g), bool)
        self.tie_columns = [k.name for k in query.group_by]
        self._refined = np.zeros(n, bool)
        self._new_chis: dict = {}   # (dtype, edges) -> [(cache key, CHI)] not saved yet
        self._new_chis_lock = threading.Lock()
        self._cache_room = max(CACHED_GROUPS, n // 50)   # groups this query may still cache
        self._members_keys: dict[int, str] = {}
        self.shapes = self._group_shapes() if any(
            isinstance(t, ast.CP) for t in self.aggregates) else None

    def _group_name(self, g: int) -> str:
        keys = {k: v for k, v in self.rows.slice(g, 1).to_pylist()[0].items() if k != "_group"}
        if not keys:
            return "the group of all rows"
        return ", ".join(f"{k} {v!r}" for k, v in keys.items())

    def _group_shapes(self) -> np.ndarray:
        """(G, 2) common height and width per group; a mixed group is an error."""
        h = self.members.rows.column("height").to_numpy().astype(np.int64)
        w = self.members.rows.column("width").to_numpy().astype(np.int64)
        flat, starts = self._starts(np.arange(len(self.member_rows)))
        out = np.zeros((len(self.member_rows), 2), np.int64)
        filled = starts[1:] > starts[:-1]
        if not filled.any():
            return out
        first = starts[:-1][filled]
        for k, values in enumerate((h[flat], w[flat])):
            low = np.minimum.reduceat(values, first)
            mixed = np.flatnonzero(low != np.maximum.reduceat(values, first))
            if len(mixed):
                g = np.flatnonzero(filled)[mixed[0]]
                rows = self.member_rows[g]
                shapes = set(zip(h[rows].tolist(), w[rows].tolist(), strict=True))
                listed = ", ".join(f"{a}x{b}" for a, b in sorted(shapes))
                raise QueryError(f"{self._group_name(g)}: its masks differ in shape ({listed});"
                                 " intersect/union/mean need one shape per group")
            out[filled, k] = low
        return out

    def _group_boxes(self, roi, groups: np.ndarray) -> np.ndarray:
        shape = self.shapes[groups]
        if isinstance(roi, ast.FullRoi):
            raw = np.stack([np.zeros(len(groups), np.int64), np.zeros(len(groups), np.int64),
                            shape[:, 1], shape[:, 0]], axis=1)
        else:
            raw = np.tile(np.array([roi.x0, roi.y0, roi.x1, roi.y1], np.int64),
                          (len(groups), 1))
        return clip_boxes(raw, shape[:, 0], shape[:, 1])

    @property
    def work(self):
        return self.members.work

    def _starts(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.member_rows.select(groups)

    def bound_all(self, groups: np.ndarray | None = None, cells: bool = False,
                  trivial: bool = False) -> None:
        """(Re)compute every aggregate's bounds for ``groups`` (default: all); ``cells``
        narrows CP over intersect/union with cell-by-cell bounds of the members, which
        costs about as much as reading them, so it is kept for groups that need it;
        ``trivial`` bounds CP over aggregated masks as if the members had no index (as
        cheap as the brute force: see ``bound_coarse``)."""
        groups = np.arange(len(self.member_rows)) if groups is None else groups
        if not len(groups):
            return
        flat, starts = self._starts(groups)
        sub = self.members.take(flat)
        for a, agg in enumerate(self.aggregates):
            if isinstance(agg, ast.CP):
                self._bound_mask_aggregate(a, agg, groups, flat, starts, cells, trivial)
                continue
            if agg.arg is None:
                z = np.zeros(len(flat))
                lo, hi, mn, Mn = aggregate_bounds("count", z, z, z.astype(bool),
                                                  z.astype(bool), starts)
            else:
                iv = interval(agg.arg, sub)
                lo, hi, mn, Mn = aggregate_bounds(agg.func, iv.lo, iv.hi, iv.may_null,
                                                  iv.must_null, starts)
                # A NaN member makes the aggregate NaN: then its bounds say nothing.
                nan = np.zeros(len(groups), bool)
                nonempty = starts[1:] > starts[:-1]
                if len(flat) and nonempty.any():
                    nan[nonempty] = np.logical_or.reduceat(iv.nan(), starts[:-1][nonempty])
                lo, hi = np.where(nan, -np.inf, lo), np.where(nan, np.inf, hi)
                self.may_nan[groups, a] = nan
            self.lower[groups, a], self.upper[groups, a] = lo, hi
            self.may_null[groups, a], self.must_null[groups, a] = mn, Mn
            if agg.arg is None:
                self.exact[groups, a] = [int(v) for v in lo]
                self.known[groups, a] = True

    def _bound_mask_aggregate(self, a: int, cp: ast.CP, groups, flat, starts,
                              cells: bool, trivial: bool = False) -> None:
        term = self.query.group_cuts[cp]
        boxes = self._group_boxes(term.roi, groups)
        area = box_areas(boxes)

        def member_bounds(ranges):   # cell by cell along the box only when refining
            if trivial:
                member_area = self.members.region(term.roi).area[flat]
                return [(np.zeros(len(flat), np.int64), member_area) for _ in ranges]
            return self.members.cut_bounds_many(flat, term.roi, ranges, refine=cells)

        lo, hi = mask_aggregate_bounds(cp.mask.aggregate, term.lo, term.hi, member_bounds,
                                       area, starts)
        empty = starts[1:] == starts[:-1]
        found = np.zeros(len(groups), bool)
        if cells and self.members.use_index and not self.members.store.aggregate_cache.empty():
            # The cached CHI of a group's own aggregated mask, where there is one, gives
            # tighter bounds than its members' cells (exact ones for aligned boxes).
            keys = [self._cache_key(cp, g) for g in groups]
            found, c_lo, c_hi = self.members.store.aggregate_cache.bounds(
                keys, boxes, term.lo, term.hi)
            found &= ~empty
            lo = np.where(found, np.maximum(lo, c_lo), lo)
            hi = np.where(found, np.minimum(hi, c_hi), hi)
        if cells and self.members.use_index and cp.mask.aggregate != "mean":
            lo, hi = self._cell_bounds(cp, term, groups, empty | found, lo, hi)
        self.lower[groups, a], self.upper[groups, a] = lo, hi
        self.may_null[groups, a] = self.must_null[groups, a] = empty
        tight = (lo == hi) & ~empty
        self.exact[groups[tight], a] = [int(v) for v in lo[tight]]
        self.known[groups[tight], a] = True
        self.exact[groups[empty], a] = None
        self.known[groups[empty], a] = True

    def _cache_key(self, cp: ast.CP, g: int) -> str:
        return entry_key(cp.mask.aggregate, self._members_key(g))

    def _members_key(self, g: int) -> str:
        """The member part of group g's cache keys (worked out for the groups asked about
        only: most queries look at few of many groups)."""
        key = self._members_keys.get(g)
        if key is None:
            key = self._members_keys[g] = members_key(
                self._mask_ids[self.member_rows[g]].tolist())
        return key

    @cached_property
    def _mask_ids(self) -> np.ndarray:
        return self.members.rows.column("mask_id").to_numpy()

    def _cell_bounds(self, cp: ast.CP, term, groups, skip, lo, hi):
        """Narrow (lo, hi) with cell-by-cell bounds, one pass per distinct group shape and
        chunk of groups, but for the groups ``skip`` (empty, or bounded by the cache)."""
        lo, hi = lo.copy(), hi.copy()
        shapes = self.shapes[groups]
        cell = self.members.store.manifest.cell_size
        sizes = self.member_rows.sizes(groups)
        for shape in np.unique(shapes[~skip], axis=0):
            same = np.flatnonzero((shapes == shape).all(axis=1) & ~skip)
            n_cells = -(-int(shape[0]) // cell) * -(-int(shape[1]) // cell)
            # Chunks of consecutive groups whose members hold about MEMBER_CELLS cells.
            chunk = (np.cumsum(sizes[same]) * n_cells - 1) // MEMBER_CELLS
            for sel in np.split(same, np.flatnonzero(np.diff(chunk)) + 1):
                flat, starts = self._starts(groups[sel])

                def cells(lo_cut, hi_cut, flat=flat):
                    return self.members.cell_bounds(flat, term.roi, lo_cut, hi_cut)

                c_lo, c_hi = mask_aggregate_cell_bounds(cp.mask.aggregate, term.lo, term.hi,
                                                        cells, starts)
                lo[sel] = np.maximum(lo[sel], c_lo)
                hi[sel] = np.minimum(hi[sel], c_hi)
        return lo, hi

    def _exact_mask_aggregates(self, terms: list[int], groups: np.ndarray) -> None:
        """Exact per-group CP terms ``terms``: each group's masks are decoded once for all,
        groups in parallel. With the index on, the CHI of each aggregated mask is built on
        the way and kept for later queries (see ``save_aggregate_chis``)."""
        segments = self.members.store.segments
        seg, row = self.members.seg, self.members.row
        cuts = [self.query.group_cuts[self.aggregates[a]] for a in terms]
        kinds = [self.aggregates[a].mask.aggregate for a in terms]
        boxes = [self._group_boxes(c.roi, groups) for c in cuts]
        keep = self.members.use_index
        # Worked out here, not in the threads: the key cache is a plain dict.
        members_keys = {g: self._members_key(g) for g in groups} if keep else None
        cache = self.members.store.aggregate_cache
        cache.empty()       # its files are read here, not by the threads
        ctl = control.current()
        counts = np.zeros((len(groups), len(terms)), np.int64)
        lock = threading.Lock()
        member_chis: dict = {}  # segment -> [(row, CHI)] of members without one (lazy)

        def run(start: int, stop: int) -> None:
            for j in range(start, stop):
                ctl.check()
                g = groups[j]
                rows = self.member_rows[g]
                if not len(rows):
                    continue
                masks = [segments[seg[r]].pixels(int(row[r])) for r in rows]
                for r, m in zip(rows, masks, strict=True):
                    index = segments[seg[r]].index
                    if not index.built[row[r]]:
                        chi = build_segment_index([m], index.edges, index.cell)
                        with lock:
                            member_chis.setdefault(seg[r], []).append((int(row[r]), chi))
                aggregated = {}
                keys = {kind: entry_key(kind, members_keys[g]) for kind in kinds} if keep \
                    else {}
                # Groups cached already (a query that does not look them up, or another
                # term's range) are not indexed again.
                cache_this = keep and not all(k in cache for k in keys.values()) \
                    and self._take_cache_room()
                for t, (kind, c) in enumerate(zip(kinds, cuts, strict=True)):
                    if kind not in aggregated:
                        pixels = aggregated[kind] = aggregate_pixels(kind, masks)
                        if cache_this and keys[kind] not in cache:
                            index = segments[seg[rows[0]]].index
                            chi = build_segment_index([pixels], index.edges, index.cell)
                            with self._new_chis_lock:
                                self._new_chis.setdefault(
                                    (pixels.dtype.name, index.edges.tobytes()), []).append(
                                    (keys[kind], chi))
                    x0, y0, x1, y1 = boxes[t][j]
                    counts[j, t] = count_in_range(aggregated[kind], x0, y0, x1, y1, c.lo.t,
                                                  c.lo.incl, c.hi.t, c.hi.incl)

        for _, stop in chunks_in_order(len(groups), spread_chunk(len(groups), 16), run):
            if ctl.progress is not None:
                ctl.progress(stop, len(groups))
            if sum(map(len, self._new_chis.values())) > AGGREGATE_CHIS_HELD:
                self.save_aggregate_chis()     # memory stays bounded on long runs
        for k, items in member_chis.items():
            items.sort(key=lambda item: item[0])
            self.work.chis_built += segments[k].add_built(
                np.array([r for r, _ in items], np.int64),
                np.concatenate([c.counts for _, c in items]),
                np.concatenate([c.eq for _, c in items]),
                np.concatenate([c.stats for _, c in items]))
        filled = self.member_rows.sizes(groups) > 0
        members, _ = self._starts(groups)
        self.work.verified += len(members)
        self.work.bytes_read += sum(segments[seg[r]].blob_size(int(row[r])) for r in members)
        self.exact[np.ix_(groups[filled], terms)] = counts[filled].astype(object)
        self.known[np.ix_(groups, terms)] = True

    def _take_cache_room(self) -> bool:
        with self._new_chis_lock:
            if self._cache_room <= 0:
                return False
            self._cache_room -= 1
            return True

    def save_aggregate_chis(self) -> None:
        """Persist the CHIs of the aggregated masks verified so far, one file per pixel
        type and bin edges, so that later queries over these groups get exact bounds."""
        cache = self.members.store.aggregate_cache
        with self._new_chis_lock:       # verifying threads may be adding more
            pending = dict(self._new_chis)
            self._new_chis.clear()
        for (dtype, _), items in pending.items():
            self.work.chis_built += cache.add_built([k for k, _ in items],
                                                    [c for _, c in items], np.dtype(dtype))

    def term_bounds(self, node):
        a = self.aggregates.index(node)
        return (self.lower[:, a], self.upper[:, a], self.may_null[:, a], self.must_null[:, a],
                self.may_nan[:, a])

    def term_exact(self, node) -> pa.Array:
        a = self.aggregates.index(node)
        if not self.known[:, a].all():
            raise AssertionError("aggregate used before it was resolved")
        return pa.array(list(self.exact[:, a]))

    def region(self, roi):
        raise AssertionError("regions are per mask, not per group")

    def bound_coarse(self) -> None:
        """Replace the trivial bounds (``bound_all(trivial=True)``) by the index's coarse
        bounds of every group; groups refined meanwhile keep their tighter bounds."""
        self.coarse_pending = False
        todo = np.flatnonzero(~self._refined)
        self.bound_all(todo)

    def refine(self, idx: np.ndarray) -> None:
        """Cell-by-cell bounds for the member masks of groups ``idx``, then new group bounds."""
        todo = idx[~self._refined[idx]]
        if not len(todo):
            return
        flat, _ = self._starts(todo)
        self.members.refine(flat)
        self._refined[todo] = True
        self.bound_all(todo, cells=True)

    def resolve(self, idx: np.ndarray, terms: list[int]) -> None:
        """Exact values of aggregates ``terms`` for groups ``idx`` (reading member pixels)."""
        if not len(idx) or not terms:
            return
        need = idx[~self.known[np.ix_(idx, terms)].all(axis=1)]
        if not len(need):
            return
        flat, starts = self._starts(need)
        self.members.resolve(flat, list(range(len(self.query.terms))))
        sub = self.members.take(flat)
        mask_terms = [a for a in terms if isinstance(self.aggregates[a], ast.CP)]
        if mask_terms:
            todo = need[~self.known[np.ix_(need, mask_terms)].all(axis=1)]
            if len(todo):
                self._exact_mask_aggregates(mask_terms, todo)
        for a in terms:
            agg = self.aggregates[a]
            if isinstance(agg, ast.CP) or agg.arg is None:
                continue
            values = evaluate(agg.arg, sub).to_pylist()
            for j, g in enumerate(need):
                part = [v for v in values[starts[j]:starts[j + 1]] if v is not None]
                try:
                    self.exact[g, a] = exact_aggregate(agg.func, part,
                                                       starts[j + 1] - starts[j])
                except QueryError as e:
                    raise located(e, agg) from None
            self.known[need, a] = True

    def take(self, idx: np.ndarray) -> GroupBatch:
        sub = GroupBatch.__new__(GroupBatch)
        sub.rows = self.rows.take(pa.array(idx, pa.int64()))
        sub.members, sub.query, sub.aggregates = self.members, self.query, self.aggregates
        sub.member_rows = self.member_rows.take(idx)
        for name in ("lower", "upper", "may_null", "must_null", "may_nan", "exact", "known",
                     "_refined"):
            setattr(sub, name, getattr(self, name)[idx])
        sub.tie_columns = self.tie_columns
        sub._new_chis, sub._new_chis_lock = self._new_chis, self._new_chis_lock
        sub._cache_room = 0
        sub._members_keys = {}
        sub.shapes = None if self.shapes is None else self.shapes[idx]
        return sub
