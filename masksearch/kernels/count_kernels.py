"""Exact pixel counting: the verification step of filter-verification."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def count_in_range(pixels, x0, y0, x1, y1, lo_t, lo_incl, hi_t, hi_incl):
    """Pixels of ``pixels[y0:y1, x0:x1]`` with value above the lo cut and within the hi cut.

    Cuts as in the CHI: lo excludes ``v < lo_t`` (or ``v <= lo_t`` when ``lo_incl``), hi keeps
    ``v < hi_t`` (or ``v <= hi_t`` when ``hi_incl``). NaN pixels are never counted.
    """
    n = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = np.float64(pixels[y, x])
            if lo_incl:
                if not v > lo_t:
                    continue
            elif not v >= lo_t:
                continue
            if hi_incl:
                if v <= hi_t:
                    n += 1
            elif v < hi_t:
                n += 1
    return n
