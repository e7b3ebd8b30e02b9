"""What every step of one query (or of one shard of it) shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..plan.operators import VerifyStats
from ..store.agg_cache import AggregateCache
from ..store.segments import Segment
from ..store.snapshot import Snapshot
from .collector import ChiCollector
from .remote import RemotePixels
from .settings import ExecSettings
from .stats import StatsRecords


@dataclass
class ExecContext:
    """``segments`` are the snapshot's (rows name theirs by position); ``verify`` is where
    pixel work on rows is counted (the plan's Verify record)."""

    segments: Sequence[Segment]
    cell_size: int          # of every CHI of the database
    use_index: bool
    settings: ExecSettings
    collector: ChiCollector
    records: StatsRecords
    verify: VerifyStats
    # Where the merge counts pixels when they are many (a cluster), else here (None).
    remote: RemotePixels | None = None

    @classmethod
    def of_snapshot(cls, snapshot: Snapshot, *, use_index: bool = True,
                    settings: ExecSettings | None = None, cache: AggregateCache | None = None,
                    records: StatsRecords | None = None, verify: VerifyStats | None = None,
                    collector: ChiCollector | None = None) -> ExecContext:
        """A context over ``snapshot`` (fresh records and collector where not given; the
        collector saves aggregated masks' CHIs in ``cache`` when the index is on)."""
        settings = settings or ExecSettings()
        collector = collector or ChiCollector(snapshot.segments, cache if use_index else None,
                                              settings.chis_held)
        return cls(snapshot.segments, snapshot.manifest.cell_size, use_index, settings,
                   collector, records or StatsRecords(), verify or VerifyStats())
