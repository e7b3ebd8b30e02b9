"""Verification: read undecided masks and count their pixels exactly, on all cores."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..index.chi import build_segment_index, cut_for_dtype, kernel_view
from ..kernels.count_kernels import count_in_range
from ..parallel import chunks_in_order, spread_chunk
from ..ranges import Cut
from ..store.segments import Segment
from . import control

CHUNK = 64   # masks per unit of work: small enough for prompt progress and cancellation
SMALLEST_CHUNK = 2   # a mask takes ~40 us to decode, about what a hand-off to a thread costs


@dataclass(frozen=True)
class CountTask:
    """Exact CP counts wanted for some masks: ``boxes[t]`` is term t's clipped box per mask."""

    segments: list[Segment]
    seg_of: np.ndarray          # (M,) segment index of each mask
    row_of: np.ndarray          # (M,) row of each mask in its segment
    boxes: list[np.ndarray]     # per term: (M, 4) clipped boxes
    cuts: list[tuple[Cut, Cut]]  # per term: (lo cut, hi cut)


def verify_candidates(task: CountTask) -> tuple[np.ndarray, int, int]:
    """Exact counts (M, T) for every mask and term, the compressed bytes read, and how many
    CHIs were built on the way (masks of lazily indexed segments get theirs from the pixels
    read here, persisted for later queries)."""
    m, n_terms = len(task.seg_of), len(task.cuts)
    out = np.zeros((m, n_terms), dtype=np.int64)
    if m == 0:
        return out, 0, 0
    unindexed: dict[int, list] = {}
    lock = threading.Lock()
    ctl = control.current()

    # Cuts depend on the segment's dtype only: work them out once, not per mask.
    cuts_of = {}
    for k in np.unique(task.seg_of):
        dtype = task.segments[k].dtype
        cuts_of[k] = [(cut_for_dtype(lo, dtype), cut_for_dtype(hi, dtype))
                      for lo, hi in task.cuts]
    boxes = np.stack(task.boxes, axis=1) if n_terms else np.zeros((m, 0, 4), np.int64)

    nbytes = np.zeros(m, np.int64)   # compressed bytes read, at each chunk's first mask

    def run(start: int, stop: int) -> None:
        for j in range(start, stop):
            ctl.check()
            k = task.seg_of[j]
            seg = task.segments[k]
            row = int(task.row_of[j])
            raw = seg.pixels(row)
            pixels = kernel_view(raw)
            nbytes[start] += seg.blob_size(row)
            if not seg.index.built[row]:
                # Build its CHI here, in this thread, from the pixels just decoded; keep only
                # the (small) CHI, not the pixels.
                chi = build_segment_index([raw], seg.index.edges, seg.index.cell)
                with lock:
                    unindexed.setdefault(k, []).append((row, chi))
            for t, (lo, hi) in enumerate(cuts_of[k]):
                x0, y0, x1, y1 = boxes[j, t]
                out[j, t] = count_in_range(pixels, x0, y0, x1, y1, lo.t, lo.incl, hi.t, hi.incl)

    done = 0
    try:
        for start, stop in chunks_in_order(m, spread_chunk(m, CHUNK, SMALLEST_CHUNK), run):
            done += stop - start
            if ctl.progress is not None:
                ctl.progress(done, m)
    except BaseException:
        ctl.cancel()   # Ctrl-C or an error: stop the chunks already running promptly
        raise
    total = int(nbytes.sum())
    built = 0
    for k, items in unindexed.items():
        items.sort(key=lambda item: item[0])
        rows = np.array([r for r, _ in items], np.int64)
        built += task.segments[k].add_built(
            rows, np.concatenate([c.counts for _, c in items]),
            np.concatenate([c.eq for _, c in items]), np.concatenate([c.stats for _, c in items]))
    return out, total, built
