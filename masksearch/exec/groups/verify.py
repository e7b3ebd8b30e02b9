"""Exact values of groups' aggregates: SUM/AVG/MIN/MAX from the members' exact values
(made exact by row verification), and CP over intersect/union/mean from the members'
pixels, aggregated group by group on all cores."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from masksearch.kernels import dispatch

from ...errors import QueryError
from ...index.chi import build_segment_index
from ...lang import ast
from ...lang.binder import CPTerm
from ...plan.operators import AggregationStats
from ...ranges import Cut
from ...store.agg_cache import AggregateCache
from .. import control
from ..aggregate import exact_aggregate
from ..context import ExecContext
from ..exact import evaluate, located
from ..mask_aggregate import aggregate_pixels
from ..verify import in_parallel, prefetch, prefetching, read_mask
from .cache_keys import CacheKeys
from .formation import Groups

GROUP_CHUNK = 16   # groups per unit of parallel work


def exact_aggregate_values(groups: Groups, agg: ast.Aggregate,
                           which: np.ndarray) -> list[Any]:
    """The exact value of ``agg`` (not COUNT(*)) for groups ``which``; the members' CP
    terms must be exact already."""
    assert agg.arg is not None
    flat, starts = groups.member_rows.select(which)
    values = evaluate(agg.arg, groups.members.take(flat)).to_pylist()
    out = []
    for j in range(len(which)):
        part = [v for v in values[starts[j]:starts[j + 1]] if v is not None]
        try:
            out.append(exact_aggregate(agg.func, part, int(starts[j + 1] - starts[j])))
        except QueryError as e:
            raise located(e, agg) from None
    return out


def aggregate_counts(masks: list[np.ndarray], kinds: list[str], boxes: list[np.ndarray],
                     cuts: Sequence[tuple[Cut, Cut]], out: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Fill ``out[t]`` with term t's count over one group's aggregated mask (``kinds[t]``
    of ``masks``, in ``boxes[t]``, range ``cuts[t]``); returns the aggregated masks."""
    aggregated: dict[str, np.ndarray] = {}
    for t, (kind, (lo, hi)) in enumerate(zip(kinds, cuts, strict=True)):
        if kind not in aggregated:
            aggregated[kind] = aggregate_pixels(kind, masks)
        x0, y0, x1, y1 = boxes[t]
        out[t] = dispatch.count_in_range(aggregated[kind], x0, y0, x1, y1, lo.t, lo.incl,
                                         hi.t, hi.incl)
    return aggregated


class MaskAggregator:
    """Counts CP over groups' aggregated masks. With the index on (a ``cache``), each
    aggregated mask's CHI is built on the way for the cache, for at most ``room`` groups
    per query: the groups that top-k and HAVING queries keep coming back to."""

    def __init__(self, ctx: ExecContext, cache: AggregateCache | None,
                 stats: AggregationStats, room: int):
        self.ctx = ctx
        self.cache = cache
        self.stats = stats
        self._room = room
        self._lock = threading.Lock()

    def _take_room(self) -> bool:
        with self._lock:
            if self._room <= 0:
                return False
            self._room -= 1
            return True

    def count(self, groups: Groups, keys: CacheKeys, cps: Sequence[ast.CP],
              cuts: Sequence[CPTerm], which: np.ndarray, build: bool = True) -> np.ndarray:
        """(len(which), len(cps)) exact counts: each group's masks decoded once for all.
        ``build=False``: no CHI is built for the cache (a top-k's first look with trivial
        bounds reads what the brute force reads, and must not cost more)."""
        members, segments, collector = groups.members, self.ctx.segments, self.ctx.collector
        seg, row = members.seg, members.row
        kinds = [cp.mask.aggregate for cp in cps if cp.mask.aggregate is not None]
        assert len(kinds) == len(cps), "CP over a group's aggregated masks only"
        boxes = [groups.boxes(c.roi, which) for c in cuts]
        pairs = [(c.lo, c.hi) for c in cuts]
        flat, _ = groups.member_rows.select(which)
        self.stats.groups += len(which)
        self.stats.verified += len(flat)
        remote = self.ctx.remote
        if remote is not None and len(flat) >= self.ctx.settings.remote_masks:
            located = [(seg[groups.member_rows[int(g)]], row[groups.member_rows[int(g)]])
                       for g in which]
            counted, nbytes = remote.count_groups(located, kinds, boxes, pairs)
            self.stats.bytes_read += nbytes
            return counted
        self.stats.bytes_read += sum(segments[int(seg[r])].blob_size(int(row[r]))
                                     for r in flat)
        cache = self.cache if build else None
        # Worked out here, not in the threads: the key memo is a plain dict, and the
        # cache's files are read here.
        entries = {int(g): {k: keys.entry(k, int(g)) for k in kinds if k} for g in which} \
            if cache is not None else {}
        if cache is not None:
            cache.empty()
        ctl = control.current()
        counts = np.zeros((len(which), len(cps)), np.int64)

        def run(start: int, stop: int) -> None:
            ahead, _ = groups.member_rows.select(which[start:stop])
            prefetch(segments, seg[ahead], row[ahead])
            for j in range(start, stop):
                ctl.check()
                g = int(which[j])
                rows = groups.member_rows[g]
                if not len(rows):
                    continue
                masks = [read_mask(segments, int(seg[r]), int(row[r]), collector)
                         for r in rows]
                aggregated = aggregate_counts(masks, kinds, [b[j] for b in boxes], pairs,
                                              counts[j])
                mine = entries.get(g, {})
                if cache is not None and not all(k in cache for k in mine.values()) \
                        and self._take_room():
                    for kind, key in mine.items():
                        if key not in cache:
                            self._collect(aggregated[kind], key, int(seg[rows[0]]))

        with prefetching(segments, seg[flat], row[flat]):
            for _ in in_parallel(len(which), GROUP_CHUNK, run):
                if collector.full:
                    collector.save()     # memory stays bounded on long runs
        return counts

    def _collect(self, pixels: np.ndarray, key: str, k: int) -> None:
        """Build the CHI of an aggregated mask (with the bins of a member's segment)."""
        index = self.ctx.segments[k].index_overview
        self.ctx.collector.add_aggregate(
            key, build_segment_index([pixels], index.edges, index.cell), pixels.dtype)
