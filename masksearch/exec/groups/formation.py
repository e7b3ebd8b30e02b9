"""Forming groups: the distinct key values of the member rows, each group's members and,
for mask aggregation, each group's one shape."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from ...errors import QueryError
from ...lang import ast
from ...store.arrow_compute import take
from ...store.numpy_arrow import array_numpy, numpy_array
from ..regions import clip_boxes
from ..rows import RowBatch


class MemberRows:
    """Per group, the indices of its member rows: one flat array and each group's start in
    it (thousands of groups: no Python object per group)."""

    def __init__(self, flat: np.ndarray, starts: np.ndarray):
        self.flat = flat.astype(np.int64, copy=False)
        self.starts = starts.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, g: int) -> np.ndarray:
        return self.flat[self.starts[g]:self.starts[g + 1]]

    def sizes(self, groups: np.ndarray) -> np.ndarray:
        sizes: np.ndarray = self.starts[groups + 1] - self.starts[groups]
        return sizes

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


def form_groups(members: RowBatch, keys: tuple[ast.Column, ...]) -> tuple[pa.Table, MemberRows]:
    """The distinct key values of ``members`` and, per group, its member row indices."""
    n = members.rows.num_rows
    if not keys:
        # Aggregates without GROUP BY: one group of every row.
        return pa.table({"_group": numpy_array(np.zeros(1, np.int64))}), MemberRows(np.arange(n), np.array([0, n]))
    names = [k.name for k in keys]
    table = members.rows.select(names).append_column("_i", numpy_array(np.arange(n, dtype=np.int64)))
    grouped = table.group_by(names, use_threads=False).aggregate([("_i", "list")])
    key_table = grouped.select(names)
    key_table = key_table.append_column("_group", numpy_array(np.arange(key_table.num_rows, dtype=np.int64)))
    if not grouped.num_rows:
        return key_table, MemberRows(np.zeros(0, np.int64), np.zeros(1, np.int64))
    column = grouped.column("_i_list").combine_chunks()
    offsets = array_numpy(column.offsets)
    return key_table, MemberRows(array_numpy(column.flatten()), offsets - offsets[0])


@dataclass
class Groups:
    """Groups under evaluation: their key values (``keys``, one row per group), the member
    rows of all of them (``members``) and which belong to which (``member_rows``)."""

    keys: pa.Table
    members: RowBatch
    member_rows: MemberRows
    shapes: np.ndarray | None = None   # (G, 2) height and width, for mask aggregation

    def __len__(self) -> int:
        return len(self.member_rows)

    def take(self, idx: np.ndarray) -> Groups:
        return Groups(take(self.keys, numpy_array(idx, pa.int64())), self.members,
                      self.member_rows.take(idx),
                      None if self.shapes is None else self.shapes[idx])

    def name(self, g: int) -> str:
        """Group ``g`` as its key values, for messages."""
        keys = {k: v for k, v in self.keys.slice(g, 1).to_pylist()[0].items() if k != "_group"}
        if not keys:
            return "the group of all rows"
        return ", ".join(f"{k} {v!r}" for k, v in keys.items())

    @cached_property
    def mask_ids(self) -> np.ndarray:
        """The members' mask ids, by member row."""
        return array_numpy(self.members.rows.column("mask_id"))

    def with_shapes(self) -> Groups:
        """These groups with ``shapes`` set; a group whose masks differ in shape is an
        error naming it."""
        h = array_numpy(self.members.rows.column("height")).astype(np.int64)
        w = array_numpy(self.members.rows.column("width")).astype(np.int64)
        flat, starts = self.member_rows.select(np.arange(len(self)))
        out = np.zeros((len(self), 2), np.int64)
        filled = starts[1:] > starts[:-1]
        if filled.any():
            first = starts[:-1][filled]
            for k, values in enumerate((h[flat], w[flat])):
                low = np.minimum.reduceat(values, first)
                mixed = np.flatnonzero(low != np.maximum.reduceat(values, first))
                if len(mixed):
                    self._mixed_shapes(int(np.flatnonzero(filled)[mixed[0]]), h, w)
                out[filled, k] = low
        return Groups(self.keys, self.members, self.member_rows, out)

    def _mixed_shapes(self, g: int, h: np.ndarray, w: np.ndarray) -> None:
        rows = self.member_rows[g]
        shapes = set(zip(h[rows].tolist(), w[rows].tolist(), strict=True))
        listed = ", ".join(f"{a}x{b}" for a, b in sorted(shapes))
        raise QueryError(f"{self.name(g)}: its masks differ in shape ({listed}); "
                         "intersect/union/mean need one shape per group")

    def boxes(self, roi: ast.Roi, groups: np.ndarray) -> np.ndarray:
        """The region ``roi`` (full or a box) clipped to each group's shape, (len, 4)."""
        assert self.shapes is not None
        shape = self.shapes[groups]
        n = len(groups)
        if isinstance(roi, ast.FullRoi):
            raw = np.stack([np.zeros(n, np.int64), np.zeros(n, np.int64), shape[:, 1],
                            shape[:, 0]], axis=1)
        else:
            assert isinstance(roi, ast.BoxRoi)
            raw = np.tile(np.array([roi.x0, roi.y0, roi.x1, roi.y1], np.int64), (n, 1))
        return clip_boxes(raw, shape[:, 0], shape[:, 1])
