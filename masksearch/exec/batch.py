"""A batch of metadata rows with lazily computed regions, CP bounds and exact CP values."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from ..index.chi import segment_cell_bounds
from ..lang import ast
from ..lang.binder import BoundQuery
from ..ranges import Cut
from ..store.store import Store
from .regions import Regions, regions
from .row_counts import cp_bounds_many
from .verify import CountTask, verify_candidates


@dataclass
class Work:
    """Pixel work done for one query, shared by a batch and every batch taken from it."""

    verified: int = 0       # masks decoded and counted
    bytes_read: int = 0     # compressed pixel bytes read
    chis_built: int = 0     # CHIs built on the way (lazy indexing)

    def snapshot(self) -> Work:
        return Work(self.verified, self.bytes_read, self.chis_built)


class Batch:
    """Rows under evaluation. Implements ``exact.Env``.

    (Rows always carry the index's coarse bounds: ``coarse_pending`` is for groups.)

    ``exact[t]`` holds term t's exact count where ``known[t]`` is set: from the index when
    its bounds are tight, else from verification.
    """

    coarse_pending = False

    def __init__(self, rows: pa.Table, store: Store, query: BoundQuery, use_index: bool):
        self.rows = rows
        self.store = store
        self.query = query
        self.use_index = use_index
        n, t = rows.num_rows, len(query.terms)
        self._regions: dict = {}
        self.lower = np.zeros((n, t), np.int64)
        self.upper = np.zeros((n, t), np.int64)
        self.null = np.zeros((n, t), bool)
        self.exact = np.zeros((n, t), np.int64)
        self.known = np.zeros((n, t), bool)
        self._bounded = np.zeros(t, bool)
        self._refined = np.zeros((n, t), bool)
        self.work = Work()
        self.tie_columns = ["mask_id"]

    @cached_property
    def seg(self) -> np.ndarray:
        """Each row's segment in the store."""
        return self.rows.column("_seg").to_numpy()

    @cached_property
    def row(self) -> np.ndarray:
        """Each row's position in its segment."""
        return self.rows.column("_row").to_numpy()

    def region(self, roi: ast.Roi) -> Regions:
        reg = self._regions.get(roi)
        if reg is None:
            reg = self._regions[roi] = regions(roi, self.rows)
        return reg

    # --- bounds ---
    def _index_bounds(self, t: int, idx: np.ndarray | slice, refine: bool):
        term = self.query.terms[t]
        return self.cut_bounds(idx, term.roi, term.lo, term.hi, refine)

    def cut_bounds(self, idx: np.ndarray | slice, roi: ast.Roi, lo: Cut, hi: Cut,
                   refine: bool = True):
        """Bounds of CP(mask, roi, range given as cuts) for rows ``idx`` (positions, or a
        slice) ([0, area] unindexed)."""
        return self.cut_bounds_many(idx, roi, [(lo, hi)], refine)[0]

    def cut_bounds_many(self, idx: np.ndarray | slice, roi: ast.Roi,
                        ranges: list[tuple[Cut, Cut]], refine: bool = True):
        """``cut_bounds`` for several ranges (as cut pairs), in one pass over the rows."""
        if not self.use_index:
            area = self.region(roi).area[idx]
            return [(np.zeros(len(area), np.int64), area.copy()) for _ in ranges]
        return cp_bounds_many(self.store.segments, self.seg[idx], self.row[idx],
                              self.region(roi).boxes[idx], ranges, refine)

    def cell_bounds(self, idx: np.ndarray, roi: ast.Roi, lo: Cut, hi: Cut):
        """Per-cell (lower, upper, covered), each (len(idx), cells), for rows of one shape."""
        boxes = self.region(roi).boxes
        seg, row = self.seg[idx], self.row[idx]
        parts = {}
        for k in np.unique(seg):
            sel = np.flatnonzero(seg == k)
            segment = self.store.segments[k]
            parts[k] = (sel, segment_cell_bounds(segment.index, segment.dtype, row[sel],
                                                 boxes[idx[sel]], lo, hi))
        n_cells = next(iter(parts.values()))[1][0].shape[1]
        out = [np.empty((len(idx), n_cells), np.int64) for _ in range(3)]
        for sel, arrays in parts.values():
            for o, a in zip(out, arrays, strict=True):
                o[sel] = a
        # Masks without a CHI yet: each cell holds between 0 and its covered pixels.
        unbuilt = np.zeros(len(idx), bool)
        for k, (sel, _) in parts.items():
            unbuilt[sel] = ~self.store.segments[k].index.built[row[sel]]
        out[0][unbuilt] = 0
        out[1][unbuilt] = out[2][unbuilt]
        return tuple(out)

    def _set_bounds(self, t: int, idx: np.ndarray | slice, lower, upper) -> None:
        null = self.region(self.query.terms[t].roi).null[idx]
        if null.any():
            lower[null] = 0
            upper[null] = 0
        self.lower[idx, t], self.upper[idx, t], self.null[idx, t] = lower, upper, null
        tight = np.flatnonzero(lower == upper)
        at = tight if isinstance(idx, slice) else idx[tight]    # idx is all rows or a subset
        self.exact[at, t] = lower[tight]
        self.known[at, t] = True

    def bound_term(self, t: int) -> None:
        """Cheap bounds of term t for every row ([0, area] without the index)."""
        if self._bounded[t]:
            return
        every = slice(None)
        if self.use_index and self.rows.num_rows:
            lower, upper = self._index_bounds(t, every, refine=False)
        else:
            lower, upper = np.zeros(self.rows.num_rows, np.int64), self.region(
                self.query.terms[t].roi).area.copy()
        self._set_bounds(t, every, lower, upper)
        self._bounded[t] = True

    def refine(self, idx: np.ndarray) -> None:
        """Narrow the bounds of rows ``idx`` cell by cell (where not tight already)."""
        if not self.use_index or not len(idx):
            return
        for t in range(len(self.query.terms)):
            self.bound_term(t)
            todo = idx[~self.known[idx, t] & ~self._refined[idx, t]]
            if len(todo):
                self._set_bounds(t, todo, *self._index_bounds(t, todo, refine=True))
                self._refined[todo, t] = True

    def term_bounds(self, cp: ast.CP):
        t = self.query.term_of[cp]
        self.bound_term(t)
        null = self.null[:, t]
        return self.lower[:, t], self.upper[:, t], null, null

    # --- exact values ---
    def resolve(self, idx: np.ndarray, terms: list[int]) -> None:
        """Make ``terms`` exact for rows ``idx``, reading the pixels of rows that need it."""
        if not len(idx) or not terms:
            return
        for t in terms:
            self.bound_term(t)
        need = idx[~self.known[np.ix_(idx, terms)].all(axis=1)]
        if not len(need):
            return
        # A mask that has to be read gets every term of the query counted at once.
        all_terms = list(range(len(self.query.terms)))
        for t in all_terms:
            self.bound_term(t)
        task = CountTask(self.store.segments, self.seg[need], self.row[need],
                         [self.region(self.query.terms[t].roi).boxes[need] for t in all_terms],
                         [(self.query.terms[t].lo, self.query.terms[t].hi) for t in all_terms])
        counts, nbytes, built = verify_candidates(task)
        self.exact[need] = counts
        self.known[need] = True
        self.work.verified += len(need)
        self.work.bytes_read += nbytes
        self.work.chis_built += built

    def term_exact(self, cp: ast.CP) -> pa.Array:
        t = self.query.term_of[cp]
        if not self.known[:, t].all():
            raise AssertionError("CP value used before it was resolved")
        return pa.array(self.exact[:, t], pa.int64(), mask=self.null[:, t])

    def take(self, idx: np.ndarray) -> Batch:
        """A batch of the rows ``idx`` sharing what is already known about them."""
        sub = Batch.__new__(Batch)
        sub.rows = self.rows.take(pa.array(idx, pa.int64()))
        sub.store, sub.query, sub.use_index = self.store, self.query, self.use_index
        sub._regions = {k: v.take(idx) for k, v in self._regions.items()}
        for name in ("lower", "upper", "null", "exact", "known", "_refined"):
            setattr(sub, name, getattr(self, name)[idx])
        sub._bounded = self._bounded.copy()
        sub.work = self.work
        sub.tie_columns = self.tie_columns
        return sub
