"""Byte shuffling: group the k-th byte of every value so that float pixels compress better."""

from numba import njit


@njit(cache=True, nogil=True)
def shuffle_bytes(src, itemsize, out):
    """``out[b * n + i] = src[i * itemsize + b]`` for n = len(src) // itemsize values."""
    n = src.shape[0] // itemsize
    for i in range(n):
        for b in range(itemsize):
            out[b * n + i] = src[i * itemsize + b]


@njit(cache=True, nogil=True)
def unshuffle_bytes(src, itemsize, out):
    """Inverse of ``shuffle_bytes``."""
    n = src.shape[0] // itemsize
    for b in range(itemsize):
        base = b * n
        for i in range(n):
            out[i * itemsize + b] = src[base + i]
