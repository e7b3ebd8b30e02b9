"""The on-disk form of a segment's CHI counts: per-cell histograms, byte-shuffled, lz4.

In memory the CHI is cumulative (bounds read four corners per rectangle); cumulative counts
are large and compress poorly. Per-cell histograms hold the same information in small
numbers, mostly zero: about 1 kB per 224x224 mask at the default settings, against 8.6 kB
raw. Loading undoes the differences in one pass.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import masksearch.kernels as kernels

from ..index.chi import SegmentIndex

CODEC = pa.Codec("lz4")


def encode_counts(index: SegmentIndex) -> bytes:
    """The counts of a full index as compressed histograms."""
    hist = np.empty_like(index.counts)
    kernels.chi_kernels.chi_to_histograms(index.counts, index.offsets, index.heights, index.widths, index.cell,
                      len(index.edges) + 1, hist)
    raw = hist.view(np.uint8)
    if hist.dtype.itemsize > 1:
        shuffled = np.empty_like(raw)
        kernels.codec_kernels.shuffle_bytes(raw, hist.dtype.itemsize, shuffled)
        raw = shuffled
    return CODEC.compress(raw, asbytes=True)


def decode_counts(data: bytes, dtype: np.dtype, size: int, offsets: np.ndarray,
                  heights: np.ndarray, widths: np.ndarray, cell: int,
                  n_edges: int) -> np.ndarray:
    """Cumulative counts (``size`` values of ``dtype``) from ``encode_counts`` bytes.
    Raises ``ValueError`` when the bytes do not decode to that many values."""
    nbytes = size * dtype.itemsize
    raw = np.frombuffer(CODEC.decompress(data, decompressed_size=nbytes), np.uint8)
    if raw.size != nbytes:
        raise ValueError(f"{raw.size} bytes of histograms, {nbytes} expected")
    if dtype.itemsize > 1:
        out = np.empty(nbytes, np.uint8)
        kernels.codec_kernels.unshuffle_bytes(raw, dtype.itemsize, out)
        raw = out
    counts = np.empty(size, dtype)
    kernels.chi_kernels.histograms_to_chi(raw.view(dtype), offsets, heights, widths, cell, n_edges + 1, counts)
    return counts
