"""Which implementation runs a query kernel: the Numba kernel or its NumPy twin.

Loading Numba and its cached kernels takes a process about 0.4 s (importing it, then
preparing its compiler on the first call), more than a CLI query on a small database may
take in all. The NumPy twins (``masksearch.kernels.twins``) give the same results, bit for
bit, at a few times the kernels' cost per element, which is nothing on small work. The rule,
per call:

- once any Numba kernel module is loaded in the process, every call runs the kernel;
- otherwise a call runs the twin while the twins' estimated time so far, this call
  included, stays within ``TWIN_BUDGET_NS`` (about a third of what loading Numba costs);
  the first call that would go beyond it loads Numba, and from then on the kernels run.

So a process never spends more than the budget in twins before paying for Numba, and small
databases never pay for Numba at all (a rent-or-buy rule). ``MASKSEARCH_KERNELS`` forces
either side for every call: ``numpy`` (the twins; the engine's oracle tests run this way
too) or ``numba``; ``auto`` (the default) applies the rule. ``force`` does the same in
process (tests).

A new query kernel joins by: a twin in ``twins.py`` with the kernel's signature; a
function here that estimates the twin's time from the call's arguments and calls
``use_twin``; callers calling that function; and a Hypothesis test in
``tests/test_twins.py`` comparing twin and kernel on random inputs.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from . import twins

if TYPE_CHECKING:
    from numpy.typing import NDArray

MODES = ("auto", "numba", "numpy")
ENV = "MASKSEARCH_KERNELS"
TWIN_BUDGET_NS = 150_000_000
# Estimated twin costs (nanoseconds, this 2-core machine): a call's fixed Python overhead,
# and per element of its work. Rough on purpose: they only decide when to load Numba.
CALL_NS = 20_000
UNSHUFFLE_NS_PER_BYTE = 1
CUMSUM_NS_PER_COUNT = 12
COUNT_NS_PER_PIXEL = 4
BOUND_NS_PER_ROW = 2_000
CELL_NS = 60
XXH64_NS_PER_BYTE = 120
TRANSPOSE_NS_PER_COUNT = 2

_KERNEL_PREFIX = "masksearch.kernels."
_lock = threading.Lock()
_spent_ns = 0
_forced: str | None = None
_numba_loaded = False


def mode() -> str:
    """The mode in force: ``force``'s, else ``MASKSEARCH_KERNELS``, else ``auto``."""
    if _forced is not None:
        return _forced
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


@contextmanager
def force(value: str) -> Iterator[None]:
    """Run the block with every kernel call in mode ``value`` (``numpy``, ``numba`` or
    ``auto``), whatever the environment says."""
    global _forced
    if value not in MODES:
        raise ValueError(f"unknown kernel mode {value!r}: expected one of {', '.join(MODES)}")
    before, _forced = _forced, value
    try:
        yield
    finally:
        _forced = before


def numba_loaded() -> bool:
    """Whether a Numba kernel module (``masksearch.kernels.*_kernels``) is loaded in this
    process: Numba's cost is paid then."""
    global _numba_loaded
    if _numba_loaded:
        return True
    if "numba" not in sys.modules:      # the common answer, at once
        return False
    _numba_loaded = any(name.startswith(_KERNEL_PREFIX) and name.endswith("_kernels")
                        for name in list(sys.modules))
    return _numba_loaded


def kernels_in_use() -> bool:
    """Whether kernel calls run the Numba kernels now (forced, or loaded under ``auto``):
    what is worth preparing only for them (the corner planes) is prepared then."""
    chosen = mode()
    return chosen == "numba" or (chosen == "auto" and numba_loaded())


def use_twin(cost_ns: int) -> bool:
    """Whether a kernel call whose twin would take about ``cost_ns`` runs the twin (and
    then counts it against the budget)."""
    global _spent_ns
    cost_ns = int(cost_ns)
    chosen = mode()
    if chosen != "auto":
        return chosen == "numpy"
    if numba_loaded():
        return False
    with _lock:
        if _spent_ns + cost_ns > TWIN_BUDGET_NS:
            return False
        _spent_ns += cost_ns
        return True


def twin_time_ns() -> int:
    """Estimated nanoseconds this process has spent in twins (under ``auto``)."""
    return _spent_ns


def reset_budget() -> None:
    """Forget the time spent in twins (tests)."""
    global _spent_ns
    with _lock:
        _spent_ns = 0


def _kernels() -> Any:
    import masksearch.kernels as kernels
    return kernels


# --- the query kernels -------------------------------------------------------------------

def unshuffle_bytes(src: NDArray[np.uint8], itemsize: int, out: NDArray[np.uint8]) -> None:
    """``codec_kernels.unshuffle_bytes`` or its twin."""
    if use_twin(CALL_NS + UNSHUFFLE_NS_PER_BYTE * int(src.shape[0])):
        twins.unshuffle_bytes(src, itemsize, out)
    else:
        _kernels().codec_kernels.unshuffle_bytes(src, itemsize, out)


def histograms_to_chi(hist_flat: np.ndarray, offsets: NDArray[np.int64],
                      heights: NDArray[np.int64], widths: NDArray[np.int64], cell: int,
                      n_cuts: int, out_flat: np.ndarray) -> None:
    """``chi_kernels.histograms_to_chi`` or its twin."""
    size = int(out_flat.shape[0])
    if use_twin(CALL_NS * 4 + CUMSUM_NS_PER_COUNT * size):
        twins.histograms_to_chi(hist_flat, offsets, heights, widths, cell, n_cuts, out_flat)
    else:
        _kernels().chi_kernels.histograms_to_chi(hist_flat, offsets, heights, widths, cell,
                                                 n_cuts, out_flat)


def count_in_range(pixels: np.ndarray, x0: int, y0: int, x1: int, y1: int, lo_t: float,
                   lo_incl: bool, hi_t: float, hi_incl: bool) -> int:
    """``count_kernels.count_in_range`` or its twin."""
    area = max(0, x1 - x0) * max(0, y1 - y0)
    if use_twin(CALL_NS + COUNT_NS_PER_PIXEL * area):
        return twins.count_in_range(pixels, x0, y0, x1, y1, lo_t, lo_incl, hi_t, hi_incl)
    return int(_kernels().count_kernels.count_in_range(pixels, x0, y0, x1, y1, lo_t, lo_incl,
                                                       hi_t, hi_incl))


def _cells_of(chi: tuple, cell: int, rows: NDArray[np.int64]) -> int:
    heights, widths = chi[2], chi[3]
    if rows.shape[0] == 0:
        return 0
    h = int(heights[rows].max())
    w = int(widths[rows].max())
    return ((h + cell - 1) // cell) * ((w + cell - 1) // cell)


def _rows_cost(n: int) -> int:
    """A bound twin's estimated time for ``n`` rows, from the grid rectangles alone."""
    return CALL_NS * 4 + BOUND_NS_PER_ROW * n


def _bounds_cost(chi: tuple, cell: int, rows: NDArray[np.int64], refine: bool) -> int:
    """The twin's estimated time for bounds of ``rows``, cell by cell with ``refine``."""
    n = int(rows.shape[0])
    cost = _rows_cost(n)
    if refine:
        cost += CELL_NS * n * _cells_of(chi, cell, rows)
    return cost


def chi_bounds(chi: tuple, cell: int, rows: NDArray[np.int64], boxes: NDArray[np.int64],
               cut: tuple[float, bool, float, bool], refine: bool,
               decide: tuple[NDArray[np.float64], NDArray[np.float64]],
               out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``bound_kernels.chi_bounds`` or its twin."""
    if use_twin(_bounds_cost(chi, cell, rows, refine)):
        twins.chi_bounds(chi, cell, rows, boxes, cut, refine, decide, out)
    else:
        _kernels().bound_kernels.chi_bounds(chi, cell, rows, boxes, cut, refine, decide, out)


def transpose_counts(counts: np.ndarray, n_masks: int, start: int, stop: int,
                     planes: np.ndarray) -> None:
    """``plane_kernels.transpose_counts`` or its twin."""
    if use_twin(CALL_NS + TRANSPOSE_NS_PER_COUNT * n_masks * (stop - start)):
        twins.transpose_counts(counts, n_masks, start, stop, planes)
    else:
        _kernels().plane_kernels.transpose_counts(counts, n_masks, start, stop, planes)


def plane_bounds(chi: tuple, planes: np.ndarray, cell: int, rows: NDArray[np.int64],
                 box: NDArray[np.int64], cut: tuple[float, bool, float, bool], refine: bool,
                 decide: tuple[NDArray[np.float64], NDArray[np.float64]],
                 out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``plane_kernels.plane_bounds`` or its twin."""
    if use_twin(_bounds_cost(chi, cell, rows, refine)):
        twins.plane_bounds(chi, planes, cell, rows, box, cut, refine, decide, out)
    else:
        _kernels().plane_kernels.plane_bounds(chi, planes, cell, rows, box, cut, refine,
                                              decide, out)


def gather_box_rects(chi: tuple, cell: int, rows: NDArray[np.int64],
                     boxes: NDArray[np.int64], start: int, stop: int, rects: np.ndarray,
                     sizes: NDArray[np.int64]) -> None:
    """``plane_kernels.gather_box_rects`` or its twin."""
    if use_twin(_rows_cost(stop - start)):
        twins.gather_box_rects(chi, cell, rows, boxes, start, stop, rects, sizes)
    else:
        _kernels().plane_kernels.gather_box_rects(chi, cell, rows, boxes, start, stop, rects,
                                                  sizes)


def box_rect_bounds(chi: tuple, rects: np.ndarray, sizes: NDArray[np.int64],
                    rows: NDArray[np.int64], start: int, stop: int,
                    cut: tuple[float, bool, float, bool],
                    out: tuple[NDArray[np.int64], NDArray[np.int64]]) -> None:
    """``plane_kernels.box_rect_bounds`` or its twin."""
    if use_twin(_rows_cost(stop - start)):
        twins.box_rect_bounds(chi, rects, sizes, rows, start, stop, cut, out)
    else:
        _kernels().plane_kernels.box_rect_bounds(chi, rects, sizes, rows, start, stop, cut,
                                                 out)


def chi_cell_bounds(chi: tuple, cell: int, rows: NDArray[np.int64], boxes: NDArray[np.int64],
                    cut: tuple[float, bool, float, bool],
                    out: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
                    ) -> None:
    """``bound_kernels.chi_cell_bounds`` or its twin."""
    if use_twin(_bounds_cost(chi, cell, rows, True)):
        twins.chi_cell_bounds(chi, cell, rows, boxes, cut, out)
    else:
        _kernels().bound_kernels.chi_cell_bounds(chi, cell, rows, boxes, cut, out)


def xxh64_in_python(nbytes: int) -> bool:
    """Whether an XXH64 digest of ``nbytes`` is worked out in Python
    (``store.checksum.xxh64_small``, the twin of ``checksum_kernels.xxh64_words``)."""
    return use_twin(CALL_NS + XXH64_NS_PER_BYTE * nbytes)
