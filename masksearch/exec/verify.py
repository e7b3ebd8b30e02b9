"""Verification: read undecided masks and count their pixels exactly, on all cores.

Masks stored in tiles (segment format 3) are counted a segment's masks at a time by one
kernel call that decodes only the tiles the index cannot settle (``tile_verify``); masks in
whole-mask blobs, and masks lazy indexing has not indexed yet (their CHI is built from the
whole mask), are decoded whole."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from masksearch.kernels import dispatch

from ..index.chi import build_segment_index, cut_for_dtype, kernel_view, segment_cuts
from ..parallel import chunks_in_order, spread_chunk
from ..ranges import Cut
from ..store.segments import Segment
from . import control
from .collector import ChiCollector
from .segment_groups import segment_groups
from .tile_verify import count_tiled, cut_array

CHUNK = 64   # masks per unit of work: small enough for prompt progress and cancellation
PREFETCH_ALL = 512   # masks whose bytes a verification asks for at once (object storage)
SMALLEST_CHUNK = 2   # a mask takes ~40 us to decode, about what a hand-off to a thread costs
# A tiled mask takes 3-30 us (only the tiles the index cannot settle are decoded): below
# this many a chunk costs less than handing it to a thread, and the Python around each
# kernel call holds the GIL, which the threads contend for (measured on 2 cores: 50-150
# masks verified 20-25% faster on the calling thread, 500-600 the same either way).
SMALLEST_TILED_CHUNK = 256
TILED_BATCH = 16     # tiled masks per kernel call (the query's control is checked between)


@dataclass(frozen=True)
class CountTask:
    """Exact CP counts wanted for some masks: ``boxes[t]`` is term t's clipped box per mask."""

    segments: Sequence[Segment]
    seg_of: np.ndarray          # (M,) segment position of each mask
    row_of: np.ndarray          # (M,) row of each mask in its segment
    boxes: list[np.ndarray]     # per term: (M, 4) clipped boxes
    cuts: list[tuple[Cut, Cut]]  # per term: (lo cut, hi cut)
    use_index: bool = True      # the index may settle cells of tiled masks


def count_in_range(pixels: np.ndarray, x0: int, y0: int, x1: int, y1: int, lo_t: float,
                   lo_incl: bool, hi_t: float, hi_incl: bool) -> int:
    """The pixels of ``pixels[y0:y1, x0:x1]`` in the range (``kernels.count_kernels`` or its
    twin, as ``kernels.dispatch`` chooses)."""
    return dispatch.count_in_range(pixels, x0, y0, x1, y1, lo_t, lo_incl, hi_t, hi_incl)


def read_mask(segments: Sequence[Segment], k: int, row: int,
              collector: ChiCollector) -> np.ndarray:
    """The pixels of mask ``row`` of segment ``k``. A mask lazy indexing has not indexed yet
    gets its CHI built from them, in the calling thread, for the collector (only the small
    CHI is kept, not the pixels)."""
    segment = segments[k]
    pixels = segment.pixels(row)
    index = segment.index_overview       # no decoding of the counts per mask
    if not index.built[row] and not collector.has_mask(k, row):
        collector.add_mask(k, row, build_segment_index([pixels], index.edges, index.cell))
    return pixels


def prefetch(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray) -> None:
    """Ask for the bytes of these masks ahead of reading them one by one (from object
    storage, several requests at once)."""
    for segment, rows in _fetched_ahead(segments, seg, row):
        segment.prefetch(rows)


@contextmanager
def prefetching(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray
                ) -> Iterator[None]:
    """A block that may prefetch these masks: whatever it did not read is dropped at its
    end, however it ends (an error, a timeout)."""
    try:
        yield
    finally:
        for segment, rows in _fetched_ahead(segments, seg, row):
            segment.discard_prefetched(rows)


def _fetched_ahead(segments: Sequence[Segment], seg: np.ndarray, row: np.ndarray
                   ) -> Iterator[tuple[Segment, list[int]]]:
    """The segments of ``seg`` whose masks are fetched ahead (none on this machine), each
    with its rows of ``row``: one grouping, not a pass over the masks per segment."""
    for k, at in segment_groups(seg):
        if segments[k].fetches_ahead:
            yield segments[k], row[at].tolist()


def in_parallel(n: int, largest: int, work: Callable[[int, int], None],
                smallest: int = SMALLEST_CHUNK) -> Iterator[int]:
    """Run ``work(start, stop)`` over chunks of ``range(n)`` (``smallest`` to ``largest``
    items) on all cores, checking the query's control between items is ``work``'s part;
    yields how many are done as chunks finish, after reporting progress. An error or Ctrl-C
    stops the chunks still running."""
    ctl = control.current()
    done = 0
    try:
        for start, stop in chunks_in_order(n, spread_chunk(n, largest, smallest), work):
            done += stop - start
            if ctl.progress is not None:
                ctl.progress(done, n)
            yield done
    except BaseException:
        ctl.cancel()
        raise


def verify_candidates(task: CountTask, collector: ChiCollector) -> tuple[np.ndarray, int]:
    """Exact counts (M, T) for every mask and term, and the compressed bytes read."""
    m, n_terms = len(task.seg_of), len(task.cuts)
    out = np.zeros((m, n_terms), dtype=np.int64)
    if m == 0:
        return out, 0
    ctl = control.current()
    # The masks in segment order, once: a chunk is then runs of one segment's masks.
    order = np.argsort(task.seg_of, kind="stable")
    seg_sorted = task.seg_of[order]
    ks = [k for k, _ in segment_groups(seg_sorted)]
    # Cuts depend on the segment's dtype only: work them out once, not per mask.
    cuts_of = {k: [(cut_for_dtype(lo, task.segments[k].dtype),
                    cut_for_dtype(hi, task.segments[k].dtype)) for lo, hi in task.cuts]
               for k in ks}
    boxes = np.stack(task.boxes, axis=1) if n_terms else np.zeros((m, 0, 4), np.int64)
    nbytes = np.zeros(m, np.int64)

    # From object storage: every mask's request at once when they are few, else a chunk's
    # with the chunk (a request waits for the network, not for a core).
    remote = any(task.segments[k].fetches_ahead for k in ks)
    few = m <= PREFETCH_ALL
    if remote and few:
        prefetch(task.segments, task.seg_of, task.row_of)

    # Tiled masks: the cuts snapped to the bin edges too (the same for every value), so
    # that the index settles every cell it can.
    tiled_cuts = {k: cut_array(list(segment_cuts(
        tuple(task.cuts), task.segments[k].dtype.str,
        np.asarray(task.segments[k].info["edges"], np.float64).tobytes())))
        for k in cuts_of if task.segments[k].tiles is not None}

    def count(start: int, stop: int) -> None:
        at = order[start:stop]
        if remote and not few:
            prefetch(task.segments, task.seg_of[at], task.row_of[at])
        whole = _count_tiled(task, (at, seg_sorted[start:stop]), tiled_cuts, boxes,
                             (collector, ctl), (out, nbytes))
        for j in whole:
            ctl.check()
            k, row = int(task.seg_of[j]), int(task.row_of[j])
            pixels = kernel_view(read_mask(task.segments, k, row, collector))
            nbytes[j] = task.segments[k].blob_size(row)
            for t, (lo, hi) in enumerate(cuts_of[k]):
                x0, y0, x1, y1 = boxes[j, t]
                out[j, t] = count_in_range(pixels, x0, y0, x1, y1, lo.t, lo.incl, hi.t,
                                           hi.incl)

    # Tiled masks the index helps verify are cheap; others are decoded whole.
    partial = task.use_index and len(tiled_cuts) == len(cuts_of)
    smallest = SMALLEST_TILED_CHUNK if partial else SMALLEST_CHUNK
    with prefetching(task.segments, task.seg_of if remote else task.seg_of[:0], task.row_of):
        for _ in in_parallel(m, CHUNK, count, smallest):
            if collector.full:
                collector.save()
    return out, int(nbytes.sum())


def _count_tiled(task: CountTask, chunk: tuple[np.ndarray, np.ndarray],
                 cuts: dict[int, np.ndarray], boxes: np.ndarray,
                 context: tuple[ChiCollector, control.QueryControl],
                 outs: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Count the masks of ``chunk`` = (their positions in ``task``, their segments, in
    runs of one segment) stored in tiles (segments in ``cuts``), a segment's at a time,
    into ``outs`` = (counts, bytes); returns the positions left to decode whole (older
    layouts, and masks whose CHI lazy indexing has to build from their pixels). ``context``
    = (the query's collector, its control, checked around each segment's call: a worker
    thread has no control of its own)."""
    collector, ctl = context
    positions, seg = chunk
    out, nbytes = outs
    whole: list[int] = []
    for k, run in segment_groups(seg):
        at = positions[run]
        if k not in cuts:
            whole += at.tolist()
            continue
        ctl.check()
        segment = task.segments[k]
        rows = task.row_of[at].astype(np.int64)
        built = segment.index_overview.built[rows]
        if not built.all():
            # A mask without a CHI is read whole when the collector wants its CHI built.
            wanted = np.array([not b and not collector.has_mask(k, int(r))
                               for b, r in zip(built.tolist(), rows.tolist(), strict=True)])
            whole += at[wanted].tolist()
            at, rows, built = at[~wanted], rows[~wanted], built[~wanted]
        if not len(at):
            continue
        # TILED_BATCH masks a call: a cancel or timeout waits for at most that many.
        for s in range(0, len(at), TILED_BATCH):
            part = slice(s, s + TILED_BATCH)
            out[at[part]] = count_tiled(segment, rows[part], boxes[at[part]], cuts[k],
                                        built[part] if task.use_index else None)
            ctl.check()
        nbytes[at] = [segment.blob_size(r) for r in rows.tolist()]
    return sorted(whole)
