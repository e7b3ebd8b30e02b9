"""How the executor spends its effort: sizes of the steps of a top-k, when cell-by-cell
bounds stop paying, how much a query caches, how work is split into shards. The defaults
suit 2 to 8 cores; tests and benchmarks pass others (``Database.query(settings=...)``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecSettings:
    first_part: int = 16        # candidates a top-k verifies first; the parts then double
    largest_part: int = 4096    # ... up to this many
    # Cell-by-cell bounds cost a fraction of reading a unit's pixels (a few percent for a
    # mask, about a third for a group's aggregated masks); when they decide less than this
    # share of the units they are tried on, the rest go straight to verification.
    refine_pays: float = 0.25
    refine_sample: int = 256    # units refined first, to judge whether the rest should be
    # Groups a top-k reads with trivial bounds before it asks the index for every group's:
    # its first three parts (16 + 32 + 64), what the brute force reads before it stops on
    # the suite's IoU top-10 ASC.
    probe_groups: int = 112
    # Per-cell group bounds are worked out for chunks of groups holding at most this many
    # member cells (about 100 bytes each while in use): memory does not grow with the data.
    member_cells: int = 1 << 18
    # Building an aggregated mask's CHI costs about as much as verifying its group: a query
    # caches at most this many groups' (or 2% of them), so one that has to verify every
    # group stays within a few percent of the brute force.
    cached_groups: int = 128
    # Grouped queries whose aggregates the stored CHIs settle exactly for every group are
    # answered in array operations (exec/groups/exact_path.py); False: the general path
    # (tests compare both, benchmarks measure both).
    exact_groups: bool = True
    chis_held: int = 4096       # built CHIs held in memory before they are saved
    shard_segments: int | None = None   # segments per shard; None: one shard of them all
    # On a cluster, the merge's verification of at least this many masks (groups' members)
    # runs on the workers; fewer are read where the query was asked (a round trip to the
    # workers costs about what reading a hundred masks here does).
    remote_masks: int = 256
    # Rows of a segment, one box on all of them, from which its corner planes pay (at
    # least this many, and at least a quarter of the segment): transposing a segment's
    # counts costs what tens of later passes over it gain.
    plane_rows: int = 1024

    def __post_init__(self) -> None:
        counts = (self.first_part, self.largest_part, self.refine_sample, self.member_cells,
                  self.chis_held, self.plane_rows)
        if min(counts) < 1 or self.probe_groups < 0 or self.remote_masks < 0 or self.cached_groups < 0 or \
                not 0 <= self.refine_pays <= 1 or (self.shard_segments is not None
                                                   and self.shard_segments < 1):
            raise ValueError(f"invalid executor settings: {self}")
