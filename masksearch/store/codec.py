"""Per-mask pixel compression: byte shuffle (multi-byte dtypes) then lz4 or zstd."""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa

import masksearch.kernels as kernels
from masksearch.kernels import dispatch

CODECS = ("lz4", "zstd")


@cache
def _codec(name: str) -> pa.Codec:
    return pa.Codec("zstd", compression_level=1) if name == "zstd" else pa.Codec(name)


def encode_mask(pixels: np.ndarray, codec: str) -> pa.Buffer:
    """Compress one C-contiguous 2-D mask."""
    raw = pixels.reshape(-1).view(np.uint8)
    itemsize = pixels.dtype.itemsize
    if itemsize > 1:
        shuffled = np.empty_like(raw)
        kernels.codec_kernels.shuffle_bytes(raw, itemsize, shuffled)
        raw = shuffled
    return _codec(codec).compress(raw, asbytes=False)


def decode_mask(blob: pa.Buffer, dtype: np.dtype, height: int, width: int,
                codec: str) -> np.ndarray:
    """Decompress one mask written by ``encode_mask``."""
    nbytes = height * width * dtype.itemsize
    raw = np.frombuffer(_codec(codec).decompress(blob, decompressed_size=nbytes), np.uint8)
    if dtype.itemsize > 1:
        out = np.empty(nbytes, np.uint8)
        dispatch.unshuffle_bytes(raw, dtype.itemsize, out)
        raw = out
    return raw.view(dtype).reshape(height, width)
