"""CP bounds and exact CP for arbitrary rows given as (segment, row, clipped box): the
building blocks the batch executor and the DuckDB functions share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..index.chi import (
    BOUND_CHUNK,
    REFINE_CHUNK,
    BoxRects,
    SegmentIndex,
    bound_tasks,
    box_rects,
)
from ..kernels import dispatch
from ..parallel import CORES, for_chunks, run_sized
from ..ranges import Cut
from ..store.index_cache import ResidentIndex, index_cache
from ..store.segments import Segment
from .collector import ChiCollector
from .regions import box_areas
from .segment_groups import segment_groups
from .settings import ExecSettings
from .verify import CountTask, verify_candidates

CHIS_HELD = 4096   # built CHIs held before they are saved
PLANE_ROWS = ExecSettings.plane_rows
# A pass reads corner planes already made when it bounds at least 1 / PLANE_SHARE of the
# segment's rows: fewer, read in the order of a top-k's parts, would each cost a cache line
# per count read, more than their own counts do.
PLANE_SHARE = 8


def cp_bounds(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray, boxes: np.ndarray,
              lo: Cut, hi: Cut, refine: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of CP per row from the CHIs; [0, area] where a mask has no
    CHI yet (lazy indexing)."""
    return cp_bounds_many(segments, seg, row, boxes, [(lo, hi)], refine)[0]


def cp_bounds_many(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray,
                   boxes: np.ndarray, ranges: list[tuple[Cut, Cut]], refine: bool,
                   decide: tuple[np.ndarray, np.ndarray] | None = None,
                   gathered: dict[int, BoxRects] | None = None,
                   plane_rows: int = PLANE_ROWS, one_box: bool = False,
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``cp_bounds`` for several ranges over the same rows and boxes, in one pass; with
    ``decide = (low, high)`` per row, refining only what does not decide
    ``low <= CP <= high`` (see ``index.chi.bound_tasks``). ``gathered``: for coarse bounds
    of a box column's rows, the rows' ``box_rects`` by segment, kept by the caller for
    these same rows and boxes (gathered here where missing). ``plane_rows``: see
    ``ExecSettings``. ``one_box``: every row's box is known to be the same (not checked)."""
    outs = [(np.zeros(len(seg), np.int64), box_areas(boxes)) for _ in ranges]
    for wave in index_waves(segments, segment_groups(seg)):
        indexes = wave_indexes(segments, [k for k, _ in wave])
        tasks = []  # every segment's chunks at once: the cores never wait segment by segment
        for k, at in wave:
            segment, index = segments[k], indexes.pop(k)
            built = index.built[row[at]]
            if not built.all():
                at = np.arange(len(seg))[at][built]
            if len(row[at]):
                rects = None if gathered is None or refine else \
                    segment_rects(gathered, k, segment, index, row[at], boxes[at])
                # One box's pass asks for the planes even when it reads gathered
                # rectangles: a refinement over many of the segment's rows reads them.
                planes = None if rects is not None and not one_box else \
                    segment_planes(segment, index, boxes[at], plane_rows, one_box)
                tasks += bound_tasks(index, segment.dtype, row[at], boxes[at], ranges,
                                     refine, outs, at, None if decide is None else
                                     (decide[0][at], decide[1][at]),
                                     planes if rects is None else None, rects)
            del index
        run_sized(tasks, REFINE_CHUNK if refine and decide is None else BOUND_CHUNK)
    return outs


def segment_planes(segment: Segment, index: SegmentIndex, boxes: np.ndarray,
                   plane_rows: int = PLANE_ROWS, one_box: bool = False) -> np.ndarray | None:
    """The segment's corner planes when the bounds of these rows' ``boxes`` (clipped) should
    read them: one box on a full index's masks of one shape, with the kernels in use, and
    planes already made (``PLANE_SHARE``) or enough rows to make them (``plane_rows``);
    None otherwise (or when the index cache has no room for them). ``one_box``: the boxes
    are known to be one box (else they are compared)."""
    source = segment.index_overview
    if (not isinstance(source, ResidentIndex) or not dispatch.kernels_in_use()
            or not (one_box or (boxes == boxes[0]).all())):
        return None
    if source.planes_cached and PLANE_SHARE * len(boxes) >= len(source.heights):
        return source.planes(index)     # made for an earlier pass: they serve this one
    if len(boxes) < plane_rows or 4 * len(boxes) < len(source.heights):
        return None
    return source.planes(index)


def segment_rects(gathered: dict[int, BoxRects], k: int, segment: Segment,
                  index: SegmentIndex, rows: np.ndarray, boxes: np.ndarray,
                  ) -> BoxRects | None:
    """Segment k's ``box_rects`` for these rows (``gathered[k]``, gathered now if missing)
    when its index is full and the kernels are in use; None otherwise."""
    if not isinstance(segment.index_overview, ResidentIndex) or not dispatch.kernels_in_use():
        return None
    rects = gathered.get(k)
    if rects is None or len(rects.sizes) != len(rows):
        rects = gathered[k] = box_rects(index, rows, boxes)
    return rects


def wave_indexes(segments: Sequence[Segment], ks: list[int]) -> dict[int, SegmentIndex]:
    """The indexes of segments ``ks``; those not in the cache decoded several at once."""
    out: dict[int, SegmentIndex] = {}
    missing = [k for k in ks if isinstance(source := segments[k].index_overview, ResidentIndex)
               and not source.cached]

    def decode(start: int, stop: int) -> None:
        for k in missing[start:stop]:
            out[k] = segments[k].index

    if len(missing) > 1:
        for_chunks(len(missing), 1, decode)
    for k in ks:
        if k not in out:
            out[k] = segments[k].index
    return out


def index_waves(segments: Sequence[Segment], groups: list[tuple[int, slice | np.ndarray]],
                ) -> list[list[tuple[int, slice | np.ndarray]]]:
    """``groups`` (segment, rows) in waves whose indexes, decoded, fit the index cache
    together: all in one wave unless the database's index outgrows the cache, so that a
    query never holds more decoded index than the cache allows (or than a segment per
    core, decoded at once, when the cache is smaller)."""
    cache = index_cache()
    cache.new_pass()
    budget = cache.budget
    waves: list[list[tuple[int, slice | np.ndarray]]] = [[]]
    size = 0
    for k, at in groups:
        source = segments[k].index_overview
        need = (source.decoded_nbytes()
                if isinstance(source, ResidentIndex) and not source.cached else 0)
        if len(waves[-1]) >= CORES and size + need > budget:
            waves.append([])
            size = 0
        waves[-1].append((k, at))
        size += need
    return waves


def cp_exact(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray,
             boxes: np.ndarray, lo: Cut, hi: Cut, persist: bool = True
             ) -> tuple[np.ndarray, int, int]:
    """Exact CP per row (reading the pixels), compressed bytes read, CHIs built (lazy
    indexing: saved before this returns, unless ``persist`` is False: read-only)."""
    collector = ChiCollector(segments, None, limit=CHIS_HELD, persist=persist)
    counts, nbytes = verify_candidates(CountTask(segments, seg, row, [boxes], [(lo, hi)]),
                                       collector)
    built, _ = collector.save()
    return counts[:, 0], nbytes, built


def cp_exact_indexed(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray,
                     boxes: np.ndarray, lo: Cut, hi: Cut, persist: bool = True
                     ) -> tuple[np.ndarray, int]:
    """Exact CP per row: from the CHI where its bounds are tight, else from the pixels;
    also how many masks were read."""
    lower, upper = cp_bounds(segments, seg, row, boxes, lo, hi, refine=True)
    need = np.flatnonzero(lower != upper)
    if len(need):
        lower[need] = cp_exact(segments, seg[need], row[need], boxes[need], lo, hi,
                               persist)[0]
    return lower, len(need)


def cp_in_interval(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray,
                   boxes: np.ndarray, lo: Cut, hi: Cut, low: np.ndarray,
                   high: np.ndarray, persist: bool = True) -> tuple[np.ndarray, int]:
    """Whether ``low <= CP <= high`` per row, reading pixels only for rows the coarse and
    then the cell-by-cell bounds leave undecided; also how many masks were read."""
    low = np.asarray(low, np.float64)
    high = np.asarray(high, np.float64)
    (lower, upper), = cp_bounds_many(segments, seg, row, boxes, [(lo, hi)], True, (low, high))
    out = (lower >= low) & (upper <= high)
    todo = np.flatnonzero(~out & (upper >= low) & (lower <= high))
    if not len(todo):
        return out, 0
    exact, _, _ = cp_exact(segments, seg[todo], row[todo], boxes[todo], lo, hi, persist)
    out[todo] = (exact >= low[todo]) & (exact <= high[todo])
    return out, len(todo)
