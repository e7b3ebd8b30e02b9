"""Verification: read undecided masks and count their pixels exactly, on all cores."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from masksearch.kernels import dispatch

from ..index.chi import build_segment_index, cut_for_dtype, kernel_view
from ..parallel import chunks_in_order, spread_chunk
from ..ranges import Cut
from ..store.segments import Segment
from . import control
from .collector import ChiCollector

CHUNK = 64   # masks per unit of work: small enough for prompt progress and cancellation
PREFETCH_ALL = 512   # masks whose bytes a verification asks for at once (object storage)
SMALLEST_CHUNK = 2   # a mask takes ~40 us to decode, about what a hand-off to a thread costs


@dataclass(frozen=True)
class CountTask:
    """Exact CP counts wanted for some masks: ``boxes[t]`` is term t's clipped box per mask."""

    segments: Sequence[Segment]
    seg_of: np.ndarray          # (M,) segment position of each mask
    row_of: np.ndarray          # (M,) row of each mask in its segment
    boxes: list[np.ndarray]     # per term: (M, 4) clipped boxes
    cuts: list[tuple[Cut, Cut]]  # per term: (lo cut, hi cut)


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
    if not len(seg):
        return
    ks, inverse = np.unique(seg, return_inverse=True)
    far = [i for i, k in enumerate(ks.tolist()) if segments[k].fetches_ahead]
    if not far:
        return
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(ks) + 1))
    for i in far:
        yield segments[int(ks[i])], row[order[bounds[i]:bounds[i + 1]]].tolist()


def in_parallel(n: int, largest: int, work: Callable[[int, int], None]) -> Iterator[int]:
    """Run ``work(start, stop)`` over chunks of ``range(n)`` on all cores, checking the
    query's control between items is ``work``'s part; yields how many are done as chunks
    finish, after reporting progress. An error or Ctrl-C stops the chunks still running."""
    ctl = control.current()
    done = 0
    try:
        for start, stop in chunks_in_order(n, spread_chunk(n, largest, SMALLEST_CHUNK), work):
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
    # Cuts depend on the segment's dtype only: work them out once, not per mask.
    cuts_of = {k: [(cut_for_dtype(lo, task.segments[k].dtype),
                    cut_for_dtype(hi, task.segments[k].dtype)) for lo, hi in task.cuts]
               for k in np.unique(task.seg_of).tolist()}
    boxes = np.stack(task.boxes, axis=1) if n_terms else np.zeros((m, 0, 4), np.int64)
    nbytes = np.zeros(m, np.int64)

    # From object storage: every mask's request at once when they are few, else a chunk's
    # with the chunk (a request waits for the network, not for a core).
    few = m <= PREFETCH_ALL
    if few:
        prefetch(task.segments, task.seg_of, task.row_of)

    def count(start: int, stop: int) -> None:
        if not few:
            prefetch(task.segments, task.seg_of[start:stop], task.row_of[start:stop])
        for j in range(start, stop):
            ctl.check()
            k, row = int(task.seg_of[j]), int(task.row_of[j])
            pixels = kernel_view(read_mask(task.segments, k, row, collector))
            nbytes[j] = task.segments[k].blob_size(row)
            for t, (lo, hi) in enumerate(cuts_of[k]):
                x0, y0, x1, y1 = boxes[j, t]
                out[j, t] = count_in_range(pixels, x0, y0, x1, y1, lo.t, lo.incl, hi.t,
                                           hi.incl)

    with prefetching(task.segments, task.seg_of, task.row_of):
        for _ in in_parallel(m, CHUNK, count):
            if collector.full:
                collector.save()
    return out, int(nbytes.sum())
