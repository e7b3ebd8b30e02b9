"""Tiled pixels (segment format 3): a mask's blob is tiles aligned with the index's cells,
each decodable alone (layout in ``kernels.tile_kernels``), so that verification decodes only
the tiles of the cells the index cannot settle.

The tile codec is chosen per pixel type by measurement (``benchmarks/bench_tiles.py``,
docs/performance.md), decoding speed first, since verification is where pixels are read:

  float32, float16, uint16   tiles LZ4-compressed where that saves bytes (the empty areas
                             of saliency maps), else stored as they are; matches of at
                             least 8 bytes only (shorter ones, in the noisy low bytes of
                             floats, saved 2% and tripled the decoding time); no byte
                             shuffle (undoing it cost more than the bytes it saved)
  uint8                      the same with matches of at least 16 bytes (half the decoding
                             time of 8, for 15% more bytes)
  bool                       the same with matches of at least 8 bytes (binary masks: most
                             tiles are one run)

Databases created with ``codec="zstd"`` keep the whole-mask layout: they asked for the
smallest files, and zstd has no decoder a kernel can call per tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import masksearch.kernels as kernels
from masksearch.kernels import dispatch

LAYOUT = "tiles"


@dataclass(frozen=True)
class TileCodec:
    """How a segment's tiles are stored: LZ4 where it saves bytes (``compress``), whether
    each tile's bytes are byte-shuffled first, and the shortest match the compressor takes
    (``min_match``: the decoder does not need it; it trades size for decoding speed)."""

    compress: bool
    shuffle: bool
    min_match: int = 4

    def describe(self) -> dict:
        """The ``tiles`` entry of segment.json."""
        return {"codec": "lz4" if self.compress else "none", "shuffle": self.shuffle,
                "min_match": self.min_match}

    @staticmethod
    def of(entry: object) -> TileCodec:
        """The codec a segment.json ``tiles`` entry names (``ValueError`` if damaged)."""
        if not isinstance(entry, dict) or entry.get("codec") not in ("lz4", "none") \
                or not isinstance(entry.get("shuffle"), bool):
            raise ValueError(f"unknown tile codec {entry!r}")
        min_match = entry.get("min_match", 4)
        if not isinstance(min_match, int) or min_match < 4:
            raise ValueError(f"unknown tile codec {entry!r}")
        return TileCodec(entry["codec"] == "lz4", entry["shuffle"], min_match)


# The measured choice per pixel type (see the module's docstring).
CHOSEN = {"float32": TileCodec(True, False, 8), "float16": TileCodec(True, False, 8),
          "uint16": TileCodec(True, False, 8), "uint8": TileCodec(True, False, 16),
          "bool": TileCodec(True, False, 8)}


def tile_codec(dtype: np.dtype) -> TileCodec:
    """The tile codec new segments of ``dtype`` are written with."""
    return CHOSEN.get(dtype.name, TileCodec(True, False, 8))


# The database codecs whose new segments are written in tiles (tests take it away to
# write databases of the older, whole-mask layout).
TILED_CODECS = frozenset({"lz4"})


def writes_tiles(codec: str) -> bool:
    """Whether a database of this codec writes new segments in tiles."""
    return codec in TILED_CODECS


def encode_tiled(pixels: np.ndarray, cell: int, codec: TileCodec) -> pa.Buffer:
    """The tiled blob of one C-contiguous 2-D mask."""
    h, w = pixels.shape
    itemsize = pixels.dtype.itemsize
    raw = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, w * itemsize)
    out = np.empty(kernels.tile_kernels.tiled_size(h, w, itemsize, cell), np.uint8)
    table = np.empty(1 << kernels.tile_kernels.HASH_LOG, np.int32)
    scratch = np.empty(2 * cell * cell * itemsize, np.uint8)
    size = kernels.tile_kernels.encode_tiles(raw, itemsize, cell, codec.shuffle,
                                             codec.compress, out, table, scratch,
                                             codec.min_match)
    return pa.py_buffer(out[:size])


# Estimated cost of decoding a mask in Python (``decode_tiled_numpy``): per tile, per byte.
TILE_TWIN_NS = 3_000
BYTE_TWIN_NS = 1


def twin_cost_ns(height: int, width: int, cell: int, itemsize: int) -> int:
    """About how long ``decode_tiled_numpy`` takes on one mask (``dispatch.use_twin``)."""
    tiles = -(-height // cell) * -(-width // cell)
    return TILE_TWIN_NS * tiles + BYTE_TWIN_NS * height * width * itemsize


def decode_tiled(blob: pa.Buffer, dtype: np.dtype, height: int, width: int, cell: int,
                 codec: TileCodec) -> np.ndarray:
    """Every tile of a blob written by ``encode_tiled``: the mask (``ValueError`` if the
    blob is damaged). Without Numba loaded, small work decodes in Python
    (``kernels.dispatch``)."""
    if dispatch.use_twin(twin_cost_ns(height, width, cell, dtype.itemsize)):
        return decode_tiled_numpy(blob, dtype, height, width, cell, codec)
    out = np.empty((height, width * dtype.itemsize), np.uint8)
    scratch = np.empty(2 * cell * cell * dtype.itemsize, np.uint8)
    if not kernels.tile_kernels.decode_tiles(np.frombuffer(blob, np.uint8), dtype.itemsize,
                                             cell, codec.shuffle, out, scratch):
        raise ValueError("the tiles do not decode")
    return out.view(dtype).reshape(height, width)


def decode_tiled_numpy(blob: pa.Buffer, dtype: np.dtype, height: int, width: int, cell: int,
                       codec: TileCodec) -> np.ndarray:
    """``decode_tiled`` without Numba: each tile through pyarrow's LZ4 block codec (the
    same format), placed with NumPy."""
    data = np.frombuffer(blob, np.uint8)
    gh, gw = -(-height // cell), -(-width // cell)
    head = 4 * gh * gw
    if data.size < head:
        raise ValueError("the tiles do not decode")
    ends = np.frombuffer(blob, "<u4", count=gh * gw).astype(np.int64)
    if data.size != head + (int(ends[-1]) if len(ends) else 0) or (np.diff(ends) < 0).any():
        raise ValueError("the tiles do not decode")
    itemsize = dtype.itemsize
    out = np.empty((height, width), dtype)
    lz4 = pa.Codec("lz4_raw")
    start = 0
    for t in range(gh * gw):
        r, s = divmod(t, gw)
        th, tw = min(cell, height - r * cell), min(cell, width - s * cell)
        raw = th * tw * itemsize
        payload = data[head + start:head + int(ends[t])]
        start = int(ends[t])
        if payload.size > raw:
            raise ValueError("the tiles do not decode")
        if payload.size < raw:
            try:
                payload = np.frombuffer(lz4.decompress(payload, decompressed_size=raw),
                                        np.uint8)
            except (pa.ArrowException, ValueError) as e:
                raise ValueError(f"the tiles do not decode ({e})") from None
            if payload.size != raw:
                raise ValueError("the tiles do not decode")
        if codec.shuffle and itemsize > 1:
            payload = np.ascontiguousarray(payload.reshape(itemsize, th * tw).T)
        out[r * cell:r * cell + th, s * cell:s * cell + tw] = \
            payload.reshape(-1).view(dtype).reshape(th, tw)
    return out
