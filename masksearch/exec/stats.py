"""What a query did: per plan operator (EXPLAIN ANALYZE) and in total (``QueryStats``)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar, cast

from ..plan.operators import Operator, OperatorStats

S = TypeVar("S", bound=OperatorStats)


class StatsRecords:
    """One stats record per operator of a plan (an operator type occurs once in a plan)."""

    def __init__(self) -> None:
        self.by_operator: dict[type[Operator[Any]], OperatorStats] = {}

    def of(self, op: Operator[S]) -> S:
        """The record of ``op``, created empty on first use."""
        record = self.by_operator.get(type(op))
        if record is None:
            record = self.by_operator[type(op)] = op.new_stats()
        return cast(S, record)

    @contextmanager
    def timed(self, op: Operator[S]) -> Iterator[S]:
        """The record of ``op``, with the time spent in the block added to it."""
        record = self.of(op)
        start = time.perf_counter()
        try:
            yield record
        finally:
            record.ms += (time.perf_counter() - start) * 1e3

    def add(self, other: StatsRecords) -> None:
        """Sum another run's records (another shard's) into these."""
        for kind, record in other.by_operator.items():
            mine = self.by_operator.get(kind)
            if mine is None:
                self.by_operator[kind] = copy.copy(record)   # flat numbers: a copy is enough
            else:
                mine.add(record)


@dataclass
class WorkerStats:
    """What one worker of a cluster did for a query."""

    shards: int = 0
    masks: int = 0           # masks its shards scanned
    verified: int = 0        # of them, masks whose pixels it read
    seconds: float = 0.0     # time its shards ran, together


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
    # Per plan operator type, its record (EXPLAIN ANALYZE).
    operators: Mapping[type[Operator[Any]], OperatorStats] = field(default_factory=dict)
    # Per worker address, when a cluster ran the fragments.
    workers: Mapping[str, WorkerStats] = field(default_factory=dict)

    @property
    def pruned(self) -> int:
        """Masks decided without reading pixels (metadata or bounds)."""
        return self.masks_total - self.verified

    def as_dict(self) -> dict[str, Any]:
        """The totals as plain values (operators by name)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("operators", "workers")}
        out["workers"] = {name: asdict(w) for name, w in self.workers.items()}
        out["operators"] = {kind.__name__: asdict(rec) for kind, rec in self.operators.items()}
        return out | {"pruned": self.pruned}

    def summary(self) -> str:
        return (f"{self.masks_total} masks: {self.rejected_by_metadata} rejected by metadata, "
                f"{self.accepted_by_index} accepted and {self.rejected_by_index} rejected by the "
                f"index, {self.verified} verified ({self.bytes_read / 1e6:.1f} MB read"
                f"{f', {self.chis_built} CHIs built' if self.chis_built else ''}); "
                f"{self.seconds * 1e3:.1f} ms")

    def lines(self) -> list[str]:
        """The totals one per line, as EXPLAIN ANALYZE ends."""
        return [f"masks: {self.masks_total}",
                f"rejected by metadata: {self.rejected_by_metadata}",
                f"accepted by the index: {self.accepted_by_index}",
                f"rejected by the index: {self.rejected_by_index}",
                f"verified (pixels read): {self.verified} masks, {self.bytes_read} bytes",
                f"CHIs built: {self.chis_built}",
                f"time: {self.seconds * 1e3:.1f} ms" + ("" if self.used_index
                                                        else " (index off)"),
                *(f"worker {name}: {w.shards} shards, {w.masks} masks, {w.verified} "
                  f"verified, {w.seconds * 1e3:.1f} ms"
                  for name, w in sorted(self.workers.items()))]
