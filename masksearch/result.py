"""Query results and their statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pyarrow as pa


@dataclass
class QueryStats:
    """What a query did: how many masks each stage decided and what it cost."""

    masks_total: int = 0          # masks in the database
    rejected_by_metadata: int = 0  # dropped by predicates on metadata alone
    accepted_by_index: int = 0    # WHERE proved true from bounds (no pixel read for it)
    rejected_by_index: int = 0    # WHERE proved false from bounds
    verified: int = 0             # masks whose pixels were read and counted
    bytes_read: int = 0           # compressed pixel bytes read
    chis_built: int = 0           # CHIs built on the way (lazy indexing)
    used_index: bool = True
    seconds: float = 0.0
    operators: dict = field(default_factory=dict)   # per plan operator (EXPLAIN ANALYZE)

    @property
    def pruned(self) -> int:
        """Masks decided without reading pixels (metadata or bounds)."""
        return self.masks_total - self.verified

    def as_dict(self) -> dict:
        return asdict(self) | {"pruned": self.pruned}

    def summary(self) -> str:
        return (f"{self.masks_total} masks: {self.rejected_by_metadata} rejected by metadata, "
                f"{self.accepted_by_index} accepted and {self.rejected_by_index} rejected by the "
                f"index, {self.verified} verified ({self.bytes_read / 1e6:.1f} MB read"
                f"{f', {self.chis_built} CHIs built' if self.chis_built else ''}); "
                f"{self.seconds * 1e3:.1f} ms")


class Result:
    """Rows of a query. Convert with ``to_arrow()``, ``to_pylist()`` or ``to_pandas()``."""

    def __init__(self, table: pa.Table, stats: QueryStats):
        self._table = table
        self.stats = stats

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pylist(self) -> list[dict]:
        return self._table.to_pylist()

    def rows(self) -> list[tuple]:
        cols = [c.to_pylist() for c in self._table.columns]
        return list(zip(*cols, strict=True))

    def to_pandas(self):
        return self._table.to_pandas()

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        from .format import format_table

        return format_table(self._table) + f"\n({len(self)} rows; {self.stats.summary()})"
