"""Bounds of each group's aggregates from its members' bounds: COUNT/SUM/AVG/MIN/MAX over
the members' intervals, and CP over intersect/union/mean from the members' CHIs (whole
region, or cell by cell), or from the cached CHI of the group's own aggregated mask."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ...lang import ast
from ...lang.binder import CPTerm
from ...ranges import Cut
from ...store.agg_cache import AggregateCache
from ..aggregate import aggregate_bounds
from ..intervals import interval
from ..mask_aggregate import mask_aggregate_bounds, mask_aggregate_cell_bounds
from ..regions import box_areas
from ..settings import ExecSettings
from .cache_keys import CacheKeys
from .formation import Groups
from .state import GroupState

Bounds = tuple[np.ndarray, np.ndarray]


@dataclass
class GroupBounder:
    """Writes bounds of ``aggregates`` (aggregates, and per-group CP terms with their
    ``cuts``) into ``state``; ``cache`` is asked for aggregated masks' CHIs (None: not)."""

    groups: Groups
    state: GroupState
    aggregates: tuple[ast.Expr, ...]
    cuts: Mapping[ast.CP, CPTerm]
    cache: AggregateCache | None
    keys: CacheKeys
    settings: ExecSettings

    def bound(self, which: np.ndarray, cells: bool = False, trivial: bool = False) -> None:
        """(Re)compute every aggregate's bounds for groups ``which``. ``cells`` narrows CP
        over intersect/union with cell-by-cell bounds of the members, which costs about as
        much as reading them, so it is kept for groups that need it; ``trivial`` bounds CP
        over aggregated masks as if the members had no index (as cheap as the brute force)."""
        if not len(which):
            return
        flat, starts = self.groups.member_rows.select(which)
        for a, agg in enumerate(self.aggregates):
            if isinstance(agg, ast.CP):
                self._mask_aggregate(a, agg, which, flat, starts, cells, trivial)
            else:
                assert isinstance(agg, ast.Aggregate)
                self._aggregate(a, agg, which, flat, starts)

    def _aggregate(self, a: int, agg: ast.Aggregate, which: np.ndarray, flat: np.ndarray,
                   starts: np.ndarray) -> None:
        s = self.state
        if agg.arg is None:     # COUNT(*): exact from the start
            z = np.zeros(len(flat))
            none = z.astype(bool)
            lo, hi, may_null, must_null = aggregate_bounds("count", z, z, none, none, starts)
            s.exact[which, a] = [int(v) for v in lo]
            s.known[which, a] = True
        else:
            iv = interval(agg.arg, self.groups.members.take(flat))
            lo, hi, may_null, must_null = aggregate_bounds(agg.func, iv.lo, iv.hi, iv.may_null,
                                                           iv.must_null, starts)
            # A NaN member makes the aggregate NaN: then its bounds say nothing.
            nan = np.zeros(len(which), bool)
            nonempty = starts[1:] > starts[:-1]
            if len(flat) and nonempty.any():
                nan[nonempty] = np.logical_or.reduceat(iv.nan(), starts[:-1][nonempty])
            lo, hi = np.where(nan, -np.inf, lo), np.where(nan, np.inf, hi)
            s.may_nan[which, a] = nan
        s.lower[which, a], s.upper[which, a] = lo, hi
        s.may_null[which, a], s.must_null[which, a] = may_null, must_null

    def _mask_aggregate(self, a: int, cp: ast.CP, which: np.ndarray, flat: np.ndarray,
                        starts: np.ndarray, cells: bool, trivial: bool) -> None:
        assert cp.mask.aggregate is not None
        term = self.cuts[cp]
        members = self.groups.members
        boxes = self.groups.boxes(term.roi, which)

        empty = starts[1:] == starts[:-1]
        found = np.zeros(len(which), bool)
        c_lo = c_hi = np.zeros(len(which), np.int64)
        if self.cache is not None and not self.cache.empty():
            # The cached (or prepared) CHI of a group's own aggregated mask, where there is
            # one, gives tighter bounds than its members' cells (exact ones for aligned
            # boxes); found by the groups' members with array operations, it is as cheap as
            # the trivial bounds, so it is used by every pass.
            located = self.keys.located(self.cache, cp.mask.aggregate).take(which)
            found = located.found & ~empty
            if found.any():
                c_lo, c_hi = self.cache.located_bounds(located, boxes, term.lo, term.hi)
        # The members' bounds, for the groups the stored CHIs leave open only.
        need = ~(found & (c_lo == c_hi))
        lo, hi = c_lo.astype(np.float64), c_hi.astype(np.float64)
        if need.any():
            sub_flat, sub_starts = (flat, starts) if need.all() else \
                self.groups.member_rows.select(which[need])

            def member_bounds(ranges: list[tuple[Cut, Cut]]) -> list[Bounds]:
                if trivial:
                    member_area = members.region(term.roi).area[sub_flat]
                    return [(np.zeros(len(sub_flat), np.int64), member_area) for _ in ranges]
                # cell by cell along the box only when refining
                return members.cut_bounds_many(sub_flat, term.roi, ranges, refine=cells)

            m_lo, m_hi = mask_aggregate_bounds(cp.mask.aggregate, term.lo, term.hi,
                                               member_bounds, box_areas(boxes[need]),
                                               sub_starts)
            f = found[need]
            lo[need] = np.where(f, np.maximum(m_lo, c_lo[need]), m_lo)
            hi[need] = np.where(f, np.minimum(m_hi, c_hi[need]), m_hi)
        if cells and members.ctx.use_index and cp.mask.aggregate != "mean":
            lo, hi = self._cell_bounds(cp, term, which, empty | found, lo, hi)
        self._set_mask_aggregate(a, which, lo, hi, empty)

    def _set_mask_aggregate(self, a: int, which: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                            empty: np.ndarray) -> None:
        s = self.state
        s.lower[which, a], s.upper[which, a] = lo, hi
        s.may_null[which, a] = s.must_null[which, a] = empty
        tight = (lo == hi) & ~empty
        s.exact[which[tight], a] = lo[tight].astype(np.int64).tolist()
        s.known[which[tight], a] = True
        s.exact[which[empty], a] = None
        s.known[which[empty], a] = True

    def _cell_bounds(self, cp: ast.CP, term: CPTerm, which: np.ndarray, skip: np.ndarray,
                     lo: np.ndarray, hi: np.ndarray) -> Bounds:
        """Narrow (lo, hi) with cell-by-cell bounds, one pass per distinct group shape and
        chunk of groups, but for the groups ``skip`` (empty, or bounded by the cache)."""
        assert cp.mask.aggregate is not None
        assert self.groups.shapes is not None
        lo, hi = lo.copy(), hi.copy()
        members = self.groups.members
        shapes = self.groups.shapes[which]
        cell = members.ctx.cell_size
        sizes = self.groups.member_rows.sizes(which)
        for shape in np.unique(shapes[~skip], axis=0):
            same = np.flatnonzero((shapes == shape).all(axis=1) & ~skip)
            n_cells = -(-int(shape[0]) // cell) * -(-int(shape[1]) // cell)
            # Chunks of consecutive groups whose members hold about ``member_cells`` cells.
            chunk = (np.cumsum(sizes[same]) * n_cells - 1) // self.settings.member_cells
            for sel in np.split(same, np.flatnonzero(np.diff(chunk)) + 1):
                flat, starts = self.groups.member_rows.select(which[sel])

                def cells(lo_cut: Cut, hi_cut: Cut, flat: np.ndarray = flat
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                    return members.cell_bounds(flat, term.roi, lo_cut, hi_cut)

                c_lo, c_hi = mask_aggregate_cell_bounds(cp.mask.aggregate, term.lo, term.hi,
                                                        cells, starts)
                lo[sel] = np.maximum(lo[sel], c_lo)
                hi[sel] = np.minimum(hi[sel], c_hi)
        return lo, hi
