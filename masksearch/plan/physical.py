"""The physical plan: a fragment of per-segment operators and the merge of its outputs.

The fragment runs on a shard, any set of segments, by itself: the local executor runs it on
one shard of all segments (one pass of the kernels over everything), a cluster would run it
on many. The merge combines the shards' outputs; it is the only step that sees all segments.
Plans are immutable and pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..lang.binder import BoundQuery
from .operators import (
    BoundFilter,
    GroupAggregate,
    GroupBounds,
    GroupFilter,
    MaskAggregation,
    MergeRows,
    MetaFilter,
    Operator,
    OperatorStats,
    PartialGroupBounds,
    Project,
    Scan,
    Selection,
    Verify,
)


@dataclass(frozen=True)
class Fragment:
    """Per-segment operators. Rows: Scan -> MetaFilter -> BoundFilter -> Verify -> Select ->
    Project, the shard's own result (its top k, for a top-k). Groups: Scan -> MetaFilter ->
    BoundFilter -> Verify -> PartialGroupBounds, the shard's member rows."""

    scan: Scan
    meta_filter: MetaFilter | None
    bound_filter: BoundFilter | None
    verify: Verify | None
    select: Selection | None = None
    project: Project | None = None
    members: PartialGroupBounds | None = None

    def operators(self) -> tuple[Operator[Any], ...]:
        """Root first."""
        ops = (self.members, self.project, self.select, self.verify, self.bound_filter,
               self.meta_filter, self.scan)
        return tuple(op for op in ops if op is not None)


@dataclass(frozen=True)
class RowMerge:
    """Rows: the shards' results merged in order."""

    merge: MergeRows

    def operators(self) -> tuple[Operator[Any], ...]:
        return (self.merge,)


@dataclass(frozen=True)
class GroupMerge:
    """Groups: formed from every shard's members, bounded, filtered, chosen, projected."""

    aggregate: GroupAggregate
    bounds: GroupBounds
    filter: GroupFilter | None
    mask_aggregation: MaskAggregation | None
    select: Selection
    project: Project

    def operators(self) -> tuple[Operator[Any], ...]:
        ops = (self.project, self.select, self.mask_aggregation, self.filter, self.bounds,
               self.aggregate)
        return tuple(op for op in ops if op is not None)


@dataclass(frozen=True)
class PhysicalPlan:
    """A statement's plan. ``output_terms`` are the terms the output needs exact: row CP
    terms (positions in ``query.terms``) or, grouped, positions in ``query.group_terms``."""

    query: BoundQuery
    fragment: Fragment
    merge: RowMerge | GroupMerge
    output_terms: tuple[int, ...]

    @property
    def grouped(self) -> bool:
        return isinstance(self.merge, GroupMerge)

    def operators(self) -> tuple[Operator[Any], ...]:
        """Every operator, root first: the merge's, then the fragment's."""
        return self.merge.operators() + self.fragment.operators()

    def describe(self, stats: Mapping[type[Operator[Any]], OperatorStats] | None = None) -> str:
        """The plan as an indented tree, root first; with ``stats`` (from a run) each line
        also says what its operator saw, decided, read and took."""
        text = self.query.text
        lines = []
        depth = 0
        for op in self.merge.operators():
            lines.append(_line(depth, op.describe(text), stats, op))
            depth += 1
        lines.append(_line(depth, "Per segment (each shard of segments on its own):", None, None))
        depth += 1
        for op in self.fragment.operators():
            lines.append(_line(depth, op.describe(text), stats, op))
            depth += 1
        return "\n".join(lines)


def _line(depth: int, label: str, stats: Mapping[type[Operator[Any]], OperatorStats] | None,
          op: Operator[Any] | None) -> str:
    line = "  " * depth + ("-> " if depth else "") + label
    record = None if stats is None or op is None else stats.get(type(op))
    return line if record is None else f"{line}  ({record.summary()})"
