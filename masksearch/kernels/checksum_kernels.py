"""XXH64 (the xxHash 64-bit digest, seed 0): checksums of stored bytes at ~10 GB/s.

``xxh64_words(words, tail, length)`` digests a byte string given as its little-endian 64-bit
words and the 0-7 bytes after them; ``store.checksum`` splits buffers that way.
"""

import numpy as np
from numba import njit
from numpy.typing import NDArray

P1 = np.uint64(11400714785074694791)
P2 = np.uint64(14029467366897019727)
P3 = np.uint64(1609587929392839161)
P4 = np.uint64(9650029242287828579)
P5 = np.uint64(2870177450012600261)
ZERO = np.uint64(0)


@njit(inline="always")
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(inline="always")
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    return _rotl(acc + lane * P2, 31) * P1


@njit(inline="always")
def _merge(acc: np.uint64, val: np.uint64) -> np.uint64:
    return (acc ^ _round(ZERO, val)) * P1 + P4


@njit(cache=True, nogil=True)
def xxh64_words(words: NDArray[np.uint64], tail: NDArray[np.uint8], length: int) -> np.uint64:
    n = words.shape[0]
    i = 0
    if length >= 32:
        v1, v2, v3, v4 = P1 + P2, P2, ZERO, ZERO - P1
        while i + 4 <= n:
            v1 = _round(v1, words[i])
            v2 = _round(v2, words[i + 1])
            v3 = _round(v3, words[i + 2])
            v4 = _round(v4, words[i + 3])
            i += 4
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(_merge(_merge(_merge(h, v1), v2), v3), v4)
    else:
        h = P5
    h = h + np.uint64(length)
    while i < n:
        h = _rotl(h ^ _round(ZERO, words[i]), 27) * P1 + P4
        i += 1
    j = 0
    if tail.shape[0] >= 4:
        w = (np.uint64(tail[0]) | (np.uint64(tail[1]) << np.uint64(8))
             | (np.uint64(tail[2]) << np.uint64(16)) | (np.uint64(tail[3]) << np.uint64(24)))
        h = _rotl(h ^ (w * P1), 23) * P2 + P3
        j = 4
    while j < tail.shape[0]:
        h = _rotl(h ^ (np.uint64(tail[j]) * P5), 11) * P1
        j += 1
    h = (h ^ (h >> np.uint64(33))) * P2
    h = (h ^ (h >> np.uint64(29))) * P3
    return h ^ (h >> np.uint64(32))
