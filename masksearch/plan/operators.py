"""The physical plan's operators: frozen dataclasses, each with its ``describe`` for EXPLAIN
and its own stats record for EXPLAIN ANALYZE.

Per-segment operators (``Scan`` to ``Project`` and ``PartialGroupBounds``) run over a shard,
any set of segments, needing nothing from other shards. Merge operators (``MergeRows`` and
the group operators) combine what the shards produced; they are the only ones that see all
segments. Selections (``VerifyAll``, ``KeyOrderTopK``, ``BoundOrderTopK``) choose rows per
shard or groups in the merge.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Generic, TypeVar

from ..lang import ast

# --- stats records -------------------------------------------------------------------------


@dataclass
class OperatorStats:
    """What one operator did in one run, summed over the shards it ran on."""

    ms: float = 0.0

    def add(self, other: OperatorStats) -> None:
        """Add ``other`` (a record of the same operator) to this one, field by field."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary(self) -> str:
        """``name value`` of every non-zero count, then the time."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "ms" or (not value and f.name not in self.always_shown):
                continue
            parts.append(f"{value / 1e6:.2f} MB read" if f.name == "bytes_read"
                         else f"{f.name.replace('_', ' ')} {value}")
        return ", ".join([*parts, f"{self.ms:.1f} ms"])

    always_shown: ClassVar[tuple[str, ...]] = ()


@dataclass
class ScanStats(OperatorStats):
    masks: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("masks",)


@dataclass
class FilterStats(OperatorStats):
    seen: int = 0
    passed: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("seen", "passed")


@dataclass
class BoundStats(OperatorStats):
    seen: int = 0
    accepted: int = 0
    rejected: int = 0
    undecided: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("seen", "accepted", "rejected", "undecided")


@dataclass
class VerifyStats(OperatorStats):
    verified: int = 0         # masks decoded and counted
    bytes_read: int = 0       # compressed pixel bytes read
    chis_built: int = 0       # CHIs built on the way (lazy indexing)
    always_shown: ClassVar[tuple[str, ...]] = ("verified",)


@dataclass
class SelectStats(OperatorStats):
    candidates: int = 0
    chosen: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("candidates", "chosen")


@dataclass
class RowsStats(OperatorStats):
    rows: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("rows",)


@dataclass
class MergeStats(OperatorStats):
    shards: int = 0
    skipped: int = 0     # shards a top-k's floor ruled out before any pixel was read
    rows: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("shards", "rows")


@dataclass
class GroupStats(OperatorStats):
    rows: int = 0
    groups: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("rows", "groups")


@dataclass
class AggregationStats(OperatorStats):
    groups: int = 0           # groups whose aggregated masks were computed
    verified: int = 0         # member masks decoded
    bytes_read: int = 0
    chis_cached: int = 0      # aggregated masks' CHIs saved for later queries
    # groups bounded from stored CHIs of their own aggregated masks, and of them those
    # stored by ``prepare_aggregates``
    stored: int = 0
    prepared: int = 0
    always_shown: ClassVar[tuple[str, ...]] = ("groups", "verified")


# --- operators -----------------------------------------------------------------------------


def source(text: str, node: object) -> str:
    """The query text of ``node`` (whitespace folded), or its type name without position."""
    pos = getattr(node, "pos", None)
    return " ".join(text[pos[2]:pos[3]].split()) if pos else type(node).__name__


def _order_text(text: str, order_by: tuple[ast.OrderItem, ...], default: str) -> str:
    return ", ".join(f"{source(text, o.expr)} {'DESC' if o.descending else 'ASC'}"
                     for o in order_by) or default


S = TypeVar("S", bound=OperatorStats)


class Operator(Generic[S]):
    """Base of plan operators; ``S`` is the type of its stats record."""

    def describe(self, text: str) -> str:
        """One line for EXPLAIN; ``text`` is the statement the plan was made from."""
        raise NotImplementedError

    def new_stats(self) -> S:
        """An empty stats record of this operator."""
        raise NotImplementedError


@dataclass(frozen=True)
class Scan(Operator[ScanStats]):
    """The metadata rows of the shard's masks, only the columns the query reads."""

    columns: tuple[str, ...]

    def new_stats(self) -> ScanStats:
        return ScanStats()

    def describe(self, text: str) -> str:
        return "Scan masks"


@dataclass(frozen=True)
class MetaFilter(Operator[FilterStats]):
    """The conjuncts of WHERE that read no pixels, evaluated on metadata alone."""

    predicate: ast.Expr

    def new_stats(self) -> FilterStats:
        return FilterStats()

    def describe(self, text: str) -> str:
        return f"MetaFilter [{_conjunction(text, self.predicate)}]"


@dataclass(frozen=True)
class BoundFilter(Operator[BoundStats]):
    """The conjuncts of WHERE with CP terms, decided from CHI bounds where they can be:
    rows are accepted, rejected, or left undecided for verification."""

    predicate: ast.Expr

    def new_stats(self) -> BoundStats:
        return BoundStats()

    def describe(self, text: str) -> str:
        return f"BoundFilter [{_conjunction(text, self.predicate)}]"


@dataclass(frozen=True)
class Verify(Operator[VerifyStats]):
    """Exact CP values of the rows bounds leave undecided (pixels decoded and counted)."""

    terms: tuple[ast.CP, ...]

    def new_stats(self) -> VerifyStats:
        return VerifyStats()

    def describe(self, text: str) -> str:
        return f"Verify [{', '.join(source(text, t) for t in self.terms)}]"


@dataclass(frozen=True)
class Selection(Operator[SelectStats]):
    """How rows (or groups) are chosen; verification happens as a selection needs it."""

    order_by: tuple[ast.OrderItem, ...]

    def new_stats(self) -> SelectStats:
        return SelectStats()


@dataclass(frozen=True)
class VerifyAll(Selection):
    """Verify every candidate, then sort by ``order_by`` and keep the first ``limit``."""

    limit: int | None = None

    def describe(self, text: str) -> str:
        if self.limit is not None:
            return (f"TopK (full) k={self.limit} by "
                    f"{_order_text(text, self.order_by, 'mask_id')}")
        if self.order_by:
            return f"Sort by {_order_text(text, self.order_by, '')}"
        return "Select all"


@dataclass(frozen=True)
class KeyOrderTopK(Selection):
    """The order keys need no pixels: walk candidates in key order, verify until ``k``
    qualify."""

    k: int = 0

    def describe(self, text: str) -> str:
        return (f"Limit (key order, early stop) k={self.k} by "
                f"{_order_text(text, self.order_by, 'key')}")


@dataclass(frozen=True)
class BoundOrderTopK(Selection):
    """The first order key holds CP: verify candidates best bound first, stop once no unread
    candidate can enter the top ``k``."""

    k: int = 0

    def describe(self, text: str) -> str:
        return f"TopK (bound order, early stop) k={self.k} by " \
               f"{_order_text(text, self.order_by, '')}"


@dataclass(frozen=True)
class Project(Operator[RowsStats]):
    """The output columns of the chosen rows (or groups)."""

    names: tuple[str, ...]
    outputs: tuple[ast.Expr, ...]

    def new_stats(self) -> RowsStats:
        return RowsStats()

    def describe(self, text: str) -> str:
        return f"Project [{', '.join(self.names)}]"


@dataclass(frozen=True)
class PartialGroupBounds(Operator[RowsStats]):
    """The shard's member rows (WHERE settled exactly) with the bounds of every CP term the
    aggregates read: what the merge reduces to group bounds."""

    keys: tuple[ast.Column, ...]

    def new_stats(self) -> RowsStats:
        return RowsStats()

    def describe(self, text: str) -> str:
        keys = ", ".join(k.name for k in self.keys) or "(all rows)"
        return f"PartialGroupBounds [members by {keys}]"


@dataclass(frozen=True)
class MergeRows(Operator[MergeStats]):
    """Every shard's rows in one result: sorted by ``order_by`` and cut to ``limit``."""

    order_by: tuple[ast.OrderItem, ...]
    limit: int | None

    def new_stats(self) -> MergeStats:
        return MergeStats()

    def describe(self, text: str) -> str:
        by = f" by {_order_text(text, self.order_by, 'mask_id')}" if self.order_by or \
            self.limit is not None else ""
        k = f" k={self.limit}" if self.limit is not None else ""
        return f"MergeRows{k}{by}"


@dataclass(frozen=True)
class GroupAggregate(Operator[GroupStats]):
    """Groups of the member rows of all shards, by key."""

    keys: tuple[ast.Column, ...]

    def new_stats(self) -> GroupStats:
        return GroupStats()

    def describe(self, text: str) -> str:
        return f"GroupAggregate by {', '.join(k.name for k in self.keys) or '(all rows)'}"


@dataclass(frozen=True)
class GroupBounds(Operator[OperatorStats]):
    """Bounds of every aggregate (and per-group CP term) per group, from the members'."""

    aggregates: tuple[ast.Expr, ...]

    def new_stats(self) -> OperatorStats:
        return OperatorStats()

    def describe(self, text: str) -> str:
        return f"GroupBounds [{', '.join(source(text, a) for a in self.aggregates)}]"


@dataclass(frozen=True)
class GroupFilter(Operator[BoundStats]):
    """HAVING, decided from group bounds where it can be, else from exact values."""

    predicate: ast.Expr

    def new_stats(self) -> BoundStats:
        return BoundStats()

    def describe(self, text: str) -> str:
        return f"GroupFilter [{source(text, self.predicate)}]"


@dataclass(frozen=True)
class MaskAggregation(Operator[AggregationStats]):
    """Exact CP over each group's intersect/union/mean mask: the members' pixels decoded
    and aggregated (their CHIs cached for later queries)."""

    terms: tuple[ast.CP, ...]

    def new_stats(self) -> AggregationStats:
        return AggregationStats()

    def describe(self, text: str) -> str:
        return f"MaskAggregation [{', '.join(source(text, t) for t in self.terms)}]"


def _conjunction(text: str, predicate: ast.Expr) -> str:
    items = predicate.items if isinstance(predicate, ast.And) and predicate.pos is None \
        else (predicate,)
    return " AND ".join(source(text, x) for x in items)
