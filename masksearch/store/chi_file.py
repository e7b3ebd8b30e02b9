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
from masksearch.kernels import dispatch

from ..index.chi import SegmentIndex

CODEC = pa.Codec("lz4")


class CountsEncoder:
    """``encode_counts`` in parts: threads turn disjoint ranges of masks into shuffled
    histograms (``add``) as their CHIs are built, then ``finish`` compresses the whole. The
    bytes are those of ``encode_counts``: one lz4 frame over the whole shuffled array."""

    def __init__(self, index: SegmentIndex):
        self.index = index
        self.itemsize = index.counts.dtype.itemsize
        self.shuffled = np.empty(index.counts.size * self.itemsize, np.uint8)

    def add(self, start: int, stop: int) -> None:
        """Masks ``start`` to ``stop`` (their CHIs complete) into the shuffled histograms."""
        ix = self.index
        lo, hi = int(ix.offsets[start]), int(ix.offsets[stop])
        hist = np.empty(hi - lo, ix.counts.dtype)
        kernels.chi_kernels.chi_to_histograms(
            ix.counts[lo:hi], ix.offsets[start:stop + 1] - lo, ix.heights[start:stop],
            ix.widths[start:stop], ix.cell, len(ix.edges) + 1, hist)
        if self.itemsize == 1:
            self.shuffled[lo:hi] = hist
            return
        kernels.codec_kernels.shuffle_bytes_part(hist.view(np.uint8), self.itemsize, lo,
                                                 ix.counts.size, self.shuffled)

    def finish(self) -> bytes:
        """The compressed histograms of every mask (all added)."""
        return CODEC.compress(self.shuffled, asbytes=True)


def encode_counts(index: SegmentIndex) -> bytes:
    """The counts of a full index as compressed histograms."""
    encoder = CountsEncoder(index)
    encoder.add(0, len(index.offsets) - 1)
    return encoder.finish()


def decode_counts(data: bytes, dtype: np.dtype, size: int, offsets: np.ndarray,
                  heights: np.ndarray, widths: np.ndarray, cell: int,
                  n_edges: int) -> np.ndarray:
    """Cumulative counts (``size`` values of ``dtype``) from ``encode_counts`` bytes.
    Raises ``ValueError`` when the bytes do not decode to that many values."""
    nbytes = size * dtype.itemsize
    # The system allocator hands a freed buffer back to the system; Arrow's default
    # (mimalloc) keeps it, which held about 3 kB a mask after decoding a whole index.
    raw = np.frombuffer(CODEC.decompress(data, decompressed_size=nbytes,
                                         memory_pool=pa.system_memory_pool()), np.uint8)
    if raw.size != nbytes:
        raise ValueError(f"{raw.size} bytes of histograms, {nbytes} expected")
    if dtype.itemsize > 1:
        out = np.empty(nbytes, np.uint8)
        dispatch.unshuffle_bytes(raw, dtype.itemsize, out)
        raw = out
    counts = np.empty(size, dtype)
    dispatch.histograms_to_chi(raw.view(dtype), offsets, heights, widths, cell, n_edges + 1, counts)
    return counts
