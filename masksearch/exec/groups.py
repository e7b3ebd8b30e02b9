"""Groups of rows (GROUP BY, or one group for aggregates without it) as units of evaluation.

``GroupBatch`` plays the part ``Batch`` plays for rows: its ``rows`` are the group keys, its
terms are the query's aggregates, with bounds from the member rows' bounds and exact values
from the member rows' exact values.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..lang import ast
from ..plan.bounds import interval
from .aggregate import aggregate_bounds, exact_aggregate
from .batch import Batch
from .exact import evaluate


def form_groups(members: Batch, keys: tuple[ast.Column, ...]) -> tuple[pa.Table, list]:
    """The distinct key values of ``members`` and, per group, its member row indices."""
    n = members.rows.num_rows
    if not keys:
        # Aggregates without GROUP BY: one group of every row.
        return pa.table({"_group": [0]}), [np.arange(n)]
    names = [k.name for k in keys]
    table = members.rows.select(names).append_column("_i", pa.array(np.arange(n)))
    grouped = table.group_by(names, use_threads=False).aggregate([("_i", "list")])
    key_table = grouped.select(names)
    key_table = key_table.append_column("_group", pa.array(np.arange(key_table.num_rows)))
    lists = [np.asarray(x, dtype=np.int64) for x in grouped.column("_i_list").to_pylist()]
    return key_table, lists


class GroupBatch:
    """Groups under evaluation. Implements ``exact.Env`` for group-level expressions."""

    def __init__(self, keys: pa.Table, member_rows: list, members: Batch, query):
        self.rows = keys
        self.members = members
        self.member_rows = member_rows
        self.query = query
        self.aggregates = list(query.aggregates)
        n, g = len(member_rows), len(self.aggregates)
        self.lower = np.zeros((n, g))
        self.upper = np.zeros((n, g))
        self.may_null = np.zeros((n, g), bool)
        self.must_null = np.zeros((n, g), bool)
        self.exact = np.empty((n, g), dtype=object)
        self.known = np.zeros((n, g), bool)
        self.tie_columns = [k.name for k in query.group_by]
        self._refined = np.zeros(n, bool)

    @property
    def verified(self) -> int:
        return self.members.verified

    @property
    def bytes_read(self) -> int:
        return self.members.bytes_read

    def _starts(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.member_rows[g] for g in groups]
        sizes = np.array([len(r) for r in rows], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return flat, starts

    def bound_all(self, groups: np.ndarray | None = None) -> None:
        """(Re)compute every aggregate's bounds for ``groups`` (default: all)."""
        groups = np.arange(len(self.member_rows)) if groups is None else groups
        if not len(groups):
            return
        flat, starts = self._starts(groups)
        sub = self.members.take(flat)
        for a, agg in enumerate(self.aggregates):
            if agg.arg is None:
                z = np.zeros(len(flat))
                lo, hi, mn, Mn = aggregate_bounds("count", z, z, z.astype(bool),
                                                  z.astype(bool), starts)
            else:
                iv = interval(agg.arg, sub)
                lo, hi, mn, Mn = aggregate_bounds(agg.func, iv.lo, iv.hi, iv.may_null,
                                                  iv.must_null, starts)
            self.lower[groups, a], self.upper[groups, a] = lo, hi
            self.may_null[groups, a], self.must_null[groups, a] = mn, Mn
            if agg.arg is None:
                self.exact[groups, a] = [int(v) for v in lo]
                self.known[groups, a] = True

    def term_bounds(self, node):
        a = self.aggregates.index(node)
        return self.lower[:, a], self.upper[:, a], self.may_null[:, a], self.must_null[:, a]

    def term_exact(self, node) -> pa.Array:
        a = self.aggregates.index(node)
        if not self.known[:, a].all():
            raise AssertionError("aggregate used before it was resolved")
        return pa.array(list(self.exact[:, a]))

    def region(self, roi):
        raise AssertionError("regions are per mask, not per group")

    def refine(self, idx: np.ndarray) -> None:
        """Cell-by-cell bounds for the member masks of groups ``idx``, then new group bounds."""
        todo = idx[~self._refined[idx]]
        if not len(todo):
            return
        flat, _ = self._starts(todo)
        self.members.refine(flat)
        self._refined[todo] = True
        self.bound_all(todo)

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
        for a in terms:
            agg = self.aggregates[a]
            if agg.arg is None:
                continue
            values = evaluate(agg.arg, sub).to_pylist()
            for j, g in enumerate(need):
                part = [v for v in values[starts[j]:starts[j + 1]] if v is not None]
                self.exact[g, a] = exact_aggregate(agg.func, part, starts[j + 1] - starts[j])
            self.known[need, a] = True

    def take(self, idx: np.ndarray) -> GroupBatch:
        sub = GroupBatch.__new__(GroupBatch)
        sub.rows = self.rows.take(pa.array(idx, pa.int64()))
        sub.members, sub.query, sub.aggregates = self.members, self.query, self.aggregates
        sub.member_rows = [self.member_rows[i] for i in idx]
        for name in ("lower", "upper", "may_null", "must_null", "exact", "known", "_refined"):
            setattr(sub, name, getattr(self, name)[idx])
        sub.tie_columns = self.tie_columns
        return sub
