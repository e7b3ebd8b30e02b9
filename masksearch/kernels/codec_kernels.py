"""Byte shuffling: group the k-th byte of every value so that float pixels compress better.

Shuffled layout of n values of ``itemsize`` bytes: byte plane b (bytes b of every value) is
``shuffled[b * n:(b + 1) * n]``. The kernels read and write whole words on the value side:
byte-at-a-time strided stores were 20x slower.
"""

import numpy as np
from numba import njit
from numpy.typing import NDArray


@njit(cache=True, nogil=True)
def unshuffle_bytes(src: NDArray[np.uint8], itemsize: int, out: NDArray[np.uint8]) -> None:
    """Values from byte planes: ``out`` (n * itemsize bytes) from shuffled ``src``."""
    n = src.shape[0] // itemsize
    if itemsize == 4:
        words = out.view(np.uint32)
        for i in range(n):
            words[i] = (np.uint32(src[i]) | (np.uint32(src[n + i]) << 8)
                        | (np.uint32(src[2 * n + i]) << 16) | (np.uint32(src[3 * n + i]) << 24))
    elif itemsize == 2:
        halves = out.view(np.uint16)
        for i in range(n):
            halves[i] = np.uint16(src[i]) | (np.uint16(src[n + i]) << 8)
    else:
        for b in range(itemsize):
            for i in range(n):
                out[i * itemsize + b] = src[b * n + i]


@njit(cache=True, nogil=True)
def shuffle_bytes(src: NDArray[np.uint8], itemsize: int, out: NDArray[np.uint8]) -> None:
    """Byte planes from values: the inverse of ``unshuffle_bytes``."""
    shuffle_bytes_part(src, itemsize, 0, src.shape[0] // itemsize, out)


@njit(cache=True, nogil=True)
def shuffle_bytes_part(part: NDArray[np.uint8], itemsize: int, start: int, n: int,
                       out: NDArray[np.uint8]) -> None:
    """``shuffle_bytes`` of n values, given only the values ``start``,
    ``start + 1``, ... (``part``): they go to their places in ``out`` (n * itemsize bytes),
    so that threads may shuffle disjoint parts of one array at once."""
    m = part.shape[0] // itemsize
    if itemsize == 4:
        words = part.view(np.uint32)
        for j in range(m):
            w = words[j]
            i = start + j
            out[i] = w & 0xFF
            out[n + i] = (w >> 8) & 0xFF
            out[2 * n + i] = (w >> 16) & 0xFF
            out[3 * n + i] = w >> 24
    elif itemsize == 2:
        halves = part.view(np.uint16)
        for j in range(m):
            h = halves[j]
            out[start + j] = h & 0xFF
            out[n + start + j] = h >> 8
    else:
        for b in range(itemsize):
            for j in range(m):
                out[b * n + start + j] = part[j * itemsize + b]
