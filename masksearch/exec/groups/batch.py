"""Groups under evaluation: what ``RowBatch`` is for rows, for groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from ...lang import ast
from ...lang.binder import CPTerm
from ...store.agg_cache import AggregateCache
from ..regions import Regions
from ..settings import ExecSettings
from .bounds import GroupBounder
from .cache_keys import CacheKeys
from .formation import Groups
from .state import GroupState
from .verify import MaskAggregator, exact_aggregate_values


class GroupBatch:
    """Groups as units of evaluation (implements ``Units``): ``rows`` are the group keys,
    the terms the query's aggregates and per-group CP terms (``aggregates``), bounded from
    the members' bounds and made exact from the members' exact values or pixels."""

    # A top-k over groups tries refining again on later parts once it stopped paying (a
    # group's cell bounds cost a third of reading it; later parts are decided more often).
    retest_refine = True

    def __init__(self, groups: Groups, aggregates: tuple[ast.Expr, ...],
                 cuts: Mapping[ast.CP, CPTerm], tie_columns: tuple[str, ...],
                 aggregator: MaskAggregator, cache: AggregateCache | None,
                 settings: ExecSettings, state: GroupState | None = None):
        self.groups = groups
        self.rows: pa.Table = groups.keys
        self.aggregates = aggregates
        self.cuts = cuts
        self.tie_columns = tie_columns
        self.aggregator = aggregator
        self.cache = cache                  # None: the index is off
        self.settings = settings
        self.state = GroupState.empty(len(groups), len(aggregates)) if state is None else state
        self.keys = CacheKeys(groups, aggregator.stats)
        self.coarse_pending = False         # True while the groups carry trivial bounds only

    @property
    def known(self) -> np.ndarray:
        return self.state.known

    @property
    def num_rows(self) -> int:
        return int(self.rows.num_rows)

    def column(self, name: str) -> pa.ChunkedArray:
        """A column of the group keys."""
        return self.rows.column(name)

    def take(self, idx: np.ndarray) -> GroupBatch:
        """The groups ``idx``, sharing what is known about them."""
        return GroupBatch(self.groups.take(idx), self.aggregates, self.cuts, self.tie_columns,
                          self.aggregator, self.cache, self.settings, self.state.take(idx))

    # --- bounds ---
    def bound_all(self, which: np.ndarray | None = None, cells: bool = False,
                  trivial: bool = False) -> None:
        """Bounds of every aggregate for groups ``which`` (default: all); see
        ``GroupBounder.bound``."""
        which = np.arange(len(self.groups)) if which is None else which
        GroupBounder(self.groups, self.state, self.aggregates, self.cuts, self.cache,
                     self.keys, self.settings).bound(which, cells, trivial)

    def bound_coarse(self) -> None:
        """Replace the trivial bounds (``bound_all(trivial=True)``) by the index's coarse
        bounds of every group; groups refined meanwhile keep their tighter bounds."""
        self.coarse_pending = False
        self.bound_all(np.flatnonzero(~self.state.refined))

    def refine(self, idx: np.ndarray) -> None:
        """Cell-by-cell bounds for the member masks of groups ``idx``, then new group
        bounds."""
        todo = idx[~self.state.refined[idx]]
        if not len(todo):
            return
        flat, _ = self.groups.member_rows.select(todo)
        self.groups.members.refine(flat)
        self.state.refined[todo] = True
        self.bound_all(todo, cells=True)

    def term_bounds(self, node: ast.Expr) -> tuple[np.ndarray, ...]:
        a = self.aggregates.index(node)
        s = self.state
        return s.lower[:, a], s.upper[:, a], s.may_null[:, a], s.must_null[:, a], \
            s.may_nan[:, a]

    def region(self, roi: ast.Roi) -> Regions:
        raise AssertionError("regions are per mask, not per group")

    # --- exact values ---
    def resolve(self, idx: np.ndarray, terms: Sequence[int]) -> None:
        """Exact values of aggregates ``terms`` for groups ``idx``: the members' CP terms
        made exact by row verification, aggregated masks counted from the pixels."""
        if not len(idx) or not len(terms):
            return
        s = self.state
        need = idx[~s.known[np.ix_(idx, np.asarray(terms, np.int64))].all(axis=1)]
        if not len(need):
            return
        members = self.groups.members
        flat, _ = self.groups.member_rows.select(need)
        members.resolve(flat, range(len(members.terms.cuts)))
        mask_terms = [a for a in terms if isinstance(self.aggregates[a], ast.CP)]
        if mask_terms:
            todo = need[~s.known[np.ix_(need, np.asarray(mask_terms, np.int64))].all(axis=1)]
            if len(todo):
                self._count_mask_aggregates(mask_terms, todo)
        for a in terms:
            agg = self.aggregates[a]
            if isinstance(agg, ast.Aggregate) and agg.arg is not None:
                s.exact[need, a] = exact_aggregate_values(self.groups, agg, need)
                s.known[need, a] = True

    def _count_mask_aggregates(self, terms: list[int], which: np.ndarray) -> None:
        cps = [self.aggregates[a] for a in terms]
        assert all(isinstance(cp, ast.CP) for cp in cps)
        cuts = [self.cuts[cp] for cp in cps]  # type: ignore[index]
        counts = self.aggregator.count(self.groups, self.keys, cps, cuts,  # type: ignore[arg-type]
                                       which, build=not self.coarse_pending)
        filled = self.groups.member_rows.sizes(which) > 0
        self.state.exact[np.ix_(which[filled], np.asarray(terms, np.int64))] = counts[filled].astype(object)
        self.state.known[np.ix_(which, np.asarray(terms, np.int64))] = True

    def term_exact(self, node: ast.Expr) -> pa.Array:
        a = self.aggregates.index(node)
        if not self.state.known[:, a].all():
            raise AssertionError("aggregate used before it was resolved")
        return pa.array(list(self.state.exact[:, a]))
