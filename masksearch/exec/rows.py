"""Rows under evaluation: their metadata, regions, and what is known of their CP terms (CHI
bounds, exact values), with verification of the rows whose values must be exact."""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import pyarrow as pa

from ..index.chi import BoxRects, segment_cell_bounds
from ..lang import ast
from ..lang.binder import CPTerm
from ..ranges import Cut
from ..store.arrow_compute import take
from ..store.numpy_arrow import array_numpy, numeric_values_and_nulls, numpy_array
from .context import ExecContext
from .regions import Regions, regions
from .row_counts import cp_bounds_many
from .verify import CountTask, verify_candidates

Index = np.ndarray | slice
REGIONS_KEPT = 2             # box columns' regions of a shard remembered across queries
ONE_BOX_KEPT = 16            # ... and one box's on masks of one size (a view of one box)
REGIONS_ROWS = 1 << 21       # ... for shards of at most this many rows (66 MB each)
# The counts of their rows' boxes' grid rectangles, gathered (``index.chi.box_rects``), for
# shards of at most this many rows (about 110 bytes a 224x224 mask: 115 MB each).
RECT_ROWS = 1 << 20
RECTS_KEPT = 2


@dataclass(frozen=True)
class RowTerms:
    """The distinct CP terms of a query's rows and the position of each CP node."""

    cuts: tuple[CPTerm, ...]
    position: Mapping[ast.CP, int]


@dataclass
class RowState:
    """What is known of each row's terms, as (rows, terms) arrays: bounds (0 where the
    region is NULL, then ``null``), the exact value where ``known``, and whether the
    cell-by-cell bounds were worked out (``refined``)."""

    lower: np.ndarray
    upper: np.ndarray
    null: np.ndarray
    exact: np.ndarray
    known: np.ndarray
    refined: np.ndarray

    @classmethod
    def empty(cls, n: int, t: int) -> RowState:
        return cls(np.zeros((n, t), np.int64), np.zeros((n, t), np.int64),
                   np.zeros((n, t), bool), np.zeros((n, t), np.int64),
                   np.zeros((n, t), bool), np.zeros((n, t), bool))

    def take(self, idx: np.ndarray) -> RowState:
        # np.take along rows: several times faster than fancy indexing of 2-D arrays
        return RowState(*(getattr(self, f.name).take(idx, axis=0) for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[RowState]) -> RowState:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts])
                     for f in fields(cls)))


class RowBatch:
    """Rows under evaluation; implements the ``Env`` of exact and interval evaluation.

    Rows always carry the index's coarse bounds once a term is bounded (``coarse_pending``
    is for groups). Batches taken from one another share the context and the pixel work.
    """

    coarse_pending = False
    tie_columns: tuple[str, ...] = ("mask_id",)

    def __init__(self, rows: pa.Table | None, terms: RowTerms, ctx: ExecContext,
                 state: RowState | None = None, bounded: np.ndarray | None = None,
                 taken: tuple[RowBatch, np.ndarray] | None = None,
                 regions_memo: dict[Hashable, object] | None = None):
        # ``taken`` = (a batch, positions in it): these rows, whose metadata table is only
        # taken from the batch's when something asks for it (a top-k's rounds take rows
        # many times and rarely need more than their bounds and one column).
        self._rows = rows
        self._taken = taken
        if rows is not None:
            self.num_rows: int = rows.num_rows
        else:
            assert taken is not None, "rows or the batch they are taken from"
            self.num_rows = len(taken[1])
        self.terms = terms
        self.ctx = ctx
        n, t = self.num_rows, len(terms.cuts)
        self.state = RowState.empty(n, t) if state is None else state
        self.bounded = np.zeros(t, bool) if bounded is None else bounded  # per term: all rows
        self._regions: dict[ast.Roi, Regions] = {}
        # Regions of these very rows kept across queries (a snapshot's shard): see region.
        self._regions_memo = regions_memo
        self._remembered: set[ast.Roi] = set()     # regions found in the memo
        self._columns: dict[str, pa.Array | pa.ChunkedArray] = {}

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the context (a shard's members travel from a worker to the
        merge, which gives them its own: ``concat``), with its metadata table."""
        self.rows  # noqa: B018 (taken now: the batch it was taken from stays here)
        state = dict(self.__dict__)
        state["ctx"] = None
        state["_taken"] = None
        state["_regions_memo"] = None      # the snapshot's, where the batch was made
        return state

    @property
    def rows(self) -> pa.Table:
        """The rows' metadata (``_seg`` and ``_row`` say where each mask is)."""
        if self._rows is None:
            assert self._taken is not None
            base, idx = self._taken
            self._rows = take(base.rows, numpy_array(idx))
        return self._rows

    def column(self, name: str) -> pa.Array | pa.ChunkedArray:
        """One metadata column (of a taken batch: taken alone)."""
        if self._rows is not None:
            return self._rows.column(name)
        col = self._columns.get(name)
        if col is None:
            assert self._taken is not None
            base, idx = self._taken
            whole = base.column(name)
            one = whole.chunk(0) if isinstance(whole, pa.ChunkedArray) and \
                whole.num_chunks == 1 else whole
            plain = numeric_values_and_nulls(one) if isinstance(one, pa.Array) and \
                not one.null_count else None
            # A numeric column without NULLs (mask_id): indexed in NumPy, not by an Arrow call.
            col = numpy_array(plain[0][idx], one.type) if plain is not None else \
                take(whole, numpy_array(idx))
            self._columns[name] = col
        return col

    @property
    def known(self) -> np.ndarray:
        return self.state.known

    @cached_property
    def seg(self) -> np.ndarray:
        """Each row's segment (a position in the snapshot)."""
        if self._taken is not None:
            base, idx = self._taken
            seg: np.ndarray = base.seg[idx]
            return seg
        return array_numpy(self.rows.column("_seg"))

    @cached_property
    def row(self) -> np.ndarray:
        """Each row's position in its segment."""
        if self._taken is not None:
            base, idx = self._taken
            row: np.ndarray = base.row[idx]
            return row
        return array_numpy(self.rows.column("_row"))

    def region(self, roi: ast.Roi) -> Regions:
        reg = self._regions.get(roi)
        if reg is None:
            if self._taken is not None:
                base, idx = self._taken
                reg = base.region(roi).take(idx)
            else:
                reg = self._remembered_region(roi)
            self._regions[roi] = reg
        return reg

    def _remembered_region(self, roi: ast.Roi) -> Regions:
        """``regions(roi, rows)``, from the memo when an earlier query over the same rows
        worked out its regions (a box column's clipped boxes take 33 bytes a row, so only a
        few, of shards of at most REGIONS_ROWS; one box on masks of one size, nothing)."""
        memo = self._regions_memo
        if self.num_rows > REGIONS_ROWS:
            memo = None
        reg = memo.get(roi) if memo is not None else None
        if isinstance(reg, Regions):
            self._remembered.add(roi)
        else:
            reg = regions(roi, self.rows)
            if memo is not None:
                _make_room(memo, reg.one_box)
                memo[roi] = reg
        return reg

    def _remembered_rects(self, roi: ast.Roi) -> dict[int, BoxRects] | None:
        """The box rectangles' counts by segment (``row_counts.cp_bounds_many``) gathered
        for a region that is remembered: kept (and forgotten) with it, for at most
        RECTS_KEPT regions (110 bytes a row each)."""
        memo = self._regions_memo
        if (memo is None or self._taken is not None or roi not in memo
                or self.num_rows > RECT_ROWS):
            return None
        region = memo[roi]
        if isinstance(region, Regions) and region.one_box and roi not in self._remembered:
            # One box on every row: the first query reads the corner planes (any box), a
            # second with the same box gathers its rectangles for the ones after it.
            return None
        key = (roi, "rects")
        if key not in memo:
            held = [k for k in memo if isinstance(k, tuple) and k[1:] == ("rects",)]
            if len(held) >= RECTS_KEPT:
                for k in held:
                    del memo[k]
        gathered = memo.setdefault(key, {})
        assert isinstance(gathered, dict)
        return gathered

    def take(self, idx: np.ndarray) -> RowBatch:
        """The rows ``idx``, sharing what is known about them."""
        idx = np.asarray(idx, np.int64)
        base, at = (self, idx) if self._taken is None else \
            (self._taken[0], self._taken[1][idx])
        sub = RowBatch(None, self.terms, self.ctx, self.state.take(idx), self.bounded.copy(),
                       taken=(base, at))
        sub._regions = {k: v.take(idx) for k, v in self._regions.items()}
        return sub

    @staticmethod
    def concat(parts: Sequence[RowBatch], ctx: ExecContext) -> RowBatch:
        """The rows of several batches (of one query's shards), one after another, under
        ``ctx`` from now on (a single batch is itself, moved under ``ctx``)."""
        first = parts[0]
        if len(parts) == 1 and first._taken is None:     # one shard (the usual): as it is
            first.ctx = ctx
            return first
        return RowBatch(pa.concat_tables([p.rows for p in parts]), first.terms, ctx,
                        RowState.concat([p.state for p in parts]),
                        np.logical_and.reduce([p.bounded for p in parts]))

    # --- bounds ---
    def cut_bounds_many(self, idx: Index, roi: ast.Roi, ranges: list[tuple[Cut, Cut]],
                        refine: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        """Bounds of CP(mask, roi, range) for rows ``idx`` and each range given as cuts, in
        one pass over the rows ([0, area] without the index)."""
        if not self.ctx.use_index:
            area = self.region(roi).area[idx]
            return [(np.zeros(len(area), np.int64), area.copy()) for _ in ranges]
        region = self.region(roi)
        every = isinstance(idx, slice) and idx == slice(None)
        gathered = self._remembered_rects(roi) if every and not refine else None
        return cp_bounds_many(self.ctx.segments, self.seg[idx], self.row[idx],
                              region.boxes[idx], ranges, refine, gathered=gathered,
                              plane_rows=self.ctx.settings.plane_rows,
                              one_box=region.one_box)

    def cell_bounds(self, idx: np.ndarray, roi: ast.Roi, lo: Cut,
                    hi: Cut) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-cell (lower, upper, covered), each (len(idx), cells), for rows of one shape;
        a mask without a CHI yet has between 0 and its covered pixels in each cell."""
        if not len(idx):
            return tuple(np.zeros((0, 0), np.int64) for _ in range(3))  # type: ignore[return-value]
        boxes = self.region(roi).boxes
        seg, row = self.seg[idx], self.row[idx]
        out: list[np.ndarray] = []
        for k in np.unique(seg).tolist():
            sel = np.flatnonzero(seg == k)
            segment = self.ctx.segments[k]
            lower, upper, covered = segment_cell_bounds(segment.index, segment.dtype,
                                                        row[sel], boxes[idx[sel]], lo, hi)
            if not out:
                out = [np.empty((len(idx), lower.shape[1]), np.int64) for _ in range(3)]
            unbuilt = ~segment.index.built[row[sel]]
            lower[unbuilt] = 0
            upper[unbuilt] = covered[unbuilt]
            for o, a in zip(out, (lower, upper, covered), strict=True):
                o[sel] = a
        return out[0], out[1], out[2]

    def _set_bounds(self, t: int, idx: Index, lower: np.ndarray, upper: np.ndarray) -> None:
        s = self.state
        null = self.region(self.terms.cuts[t].roi).null[idx]
        if null.any():
            lower[null] = 0
            upper[null] = 0
        s.lower[idx, t], s.upper[idx, t], s.null[idx, t] = lower, upper, null
        if isinstance(idx, slice):      # all rows: masked writes into the views
            same = lower == upper
            np.copyto(s.exact[idx, t], lower, where=same)
            s.known[idx, t] |= same
            return
        tight = np.flatnonzero(lower == upper)
        s.exact[idx[tight], t] = lower[tight]
        s.known[idx[tight], t] = True

    def bound_term(self, t: int) -> None:
        """Coarse bounds of term t for every row ([0, area] without the index)."""
        if self.bounded[t]:
            return
        term = self.terms.cuts[t]
        every = slice(None)
        (lower, upper), = self.cut_bounds_many(every, term.roi, [(term.lo, term.hi)],
                                               refine=False)
        self._set_bounds(t, every, lower, upper)
        self.bounded[t] = True

    def refine(self, idx: np.ndarray) -> None:
        """Narrow the bounds of rows ``idx`` cell by cell (where not tight already)."""
        if not self.ctx.use_index or not len(idx):
            return
        s = self.state
        for t, term in enumerate(self.terms.cuts):
            self.bound_term(t)
            todo = idx[~s.known[idx, t] & ~s.refined[idx, t]]
            if len(todo):
                (lower, upper), = self.cut_bounds_many(todo, term.roi, [(term.lo, term.hi)])
                self._set_bounds(t, todo, lower, upper)
                s.refined[todo, t] = True

    def bound_coarse(self) -> None:
        """Rows carry the index's coarse bounds from the start: nothing to do."""

    def term_bounds(self, cp: ast.Expr) -> tuple[np.ndarray, ...]:
        assert isinstance(cp, ast.CP)
        t = self.terms.position[cp]
        self.bound_term(t)
        null = self.state.null[:, t]
        return self.state.lower[:, t], self.state.upper[:, t], null, null

    # --- exact values ---
    def resolve(self, idx: np.ndarray, terms: Sequence[int]) -> None:
        """Make ``terms`` exact for rows ``idx``, reading the pixels of rows that need it
        (a mask that has to be read gets every term counted at once)."""
        if not len(idx) or not len(terms):
            return
        for t in terms:
            self.bound_term(t)
        s = self.state
        need = idx[~s.known[np.ix_(idx, np.asarray(terms, np.int64))].all(axis=1)]
        if not len(need):
            return
        start = time.perf_counter()
        every = range(len(self.terms.cuts))
        for t in every:
            self.bound_term(t)
        cuts = self.terms.cuts
        task = CountTask(self.ctx.segments, self.seg[need], self.row[need],
                         [self.region(cuts[t].roi).boxes[need] for t in every],
                         [(cuts[t].lo, cuts[t].hi) for t in every],
                         use_index=self.ctx.use_index)
        remote = self.ctx.remote
        if remote is not None and len(need) >= self.ctx.settings.remote_masks:
            counts, nbytes = remote.count_rows(task.seg_of, task.row_of, task.boxes,
                                               task.cuts)
        else:
            counts, nbytes = verify_candidates(task, self.ctx.collector)
        s.exact[need] = counts
        s.known[need] = True
        record = self.ctx.verify
        record.verified += len(need)
        record.bytes_read += nbytes
        record.ms += (time.perf_counter() - start) * 1e3

    def term_exact(self, cp: ast.Expr) -> pa.Array:
        assert isinstance(cp, ast.CP)
        t = self.terms.position[cp]
        if not self.state.known[:, t].all():
            raise AssertionError("CP value used before it was resolved")
        return numpy_array(self.state.exact[:, t], pa.int64(), mask=self.state.null[:, t])


def _make_room(memo: dict[Hashable, object], one_box: bool) -> None:
    """Forget remembered regions of the kind about to be added (one box on masks of one
    size, or clipped boxes per row, with the rectangles gathered for them) when there are
    as many as that kind keeps."""
    kept = ONE_BOX_KEPT if one_box else REGIONS_KEPT
    same = [k for k, v in memo.items() if isinstance(v, Regions) and v.one_box == one_box]
    if len(same) < kept:
        return
    for roi in same:
        del memo[roi]
        memo.pop((roi, "rects"), None)
