"""Segments: immutable directories holding the pixels, metadata and CHI of a batch of masks.

Files of a segment directory:
  segment.json    dtype, codec, cell size, bin edges, count dtype
  pixels.arrow    Arrow IPC file, one row per mask, a ``blob`` column of compressed pixels;
                  memory-mapped, so reading mask i touches only its own bytes
  meta.parquet    the masks' metadata columns (mask_id, image_id, ..., height, width, user columns)
  chi.npy         flat CHI counts; chi_eq.npy (N, E); chi_stats.npy (N, 2)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..index.chi import SegmentIndex, build_segment_index, chi_offsets
from .codec import decode_mask, encode_mask

BLOB_SCHEMA = pa.schema([("blob", pa.large_binary())])


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(directory: Path, masks: list[np.ndarray], meta: pa.Table, edges: np.ndarray,
                  cell: int, codec: str, workers: int,
                  on_encoded: Callable[[int], None] | None = None) -> None:
    """Write a complete segment into ``directory`` (which must not exist) and fsync it.

    ``on_encoded(k)`` is told after every batch of k masks compressed (for progress bars).
    """
    directory.mkdir(parents=True)
    dtype = masks[0].dtype
    blobs: list[pa.Buffer] = []
    step = 256
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(masks), step):
            part = masks[start:start + step]
            blobs.extend(pool.map(lambda m: encode_mask(m, codec), part))
            if on_encoded is not None:
                on_encoded(len(part))
    index = build_segment_index(masks, edges, cell)
    with pa.OSFile(str(directory / "pixels.arrow"), "wb") as sink:
        with pa.ipc.new_file(sink, BLOB_SCHEMA) as writer:
            writer.write_table(pa.table({"blob": pa.array([b.to_pybytes() for b in blobs],
                                                          pa.large_binary())}))
    pq.write_table(meta, directory / "meta.parquet")
    np.save(directory / "chi.npy", index.counts)
    np.save(directory / "chi_eq.npy", index.eq)
    np.save(directory / "chi_stats.npy", index.stats)
    info = {"dtype": dtype.name, "count": len(masks), "codec": codec, "cell_size": cell,
            "edges": [float(e) for e in edges]}
    (directory / "segment.json").write_text(json.dumps(info))
    for name in ("pixels.arrow", "meta.parquet", "chi.npy", "chi_eq.npy", "chi_stats.npy",
                 "segment.json"):
        _fsync_file(directory / name)


@dataclass
class Segment:
    """Read access to one committed segment. Files are opened on first use."""

    directory: Path

    @cached_property
    def info(self) -> dict:
        path = self.directory / "segment.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{path}: cannot read segment description ({e})") from None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info["dtype"])

    @cached_property
    def meta(self) -> pa.Table:
        path = self.directory / "meta.parquet"
        try:
            return pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{path}: cannot read metadata ({e})") from None

    @cached_property
    def _shape(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.meta.column("height").to_numpy().astype(np.int64),
                self.meta.column("width").to_numpy().astype(np.int64))

    @cached_property
    def _blobs(self) -> tuple[pa.Buffer, np.ndarray]:
        path = self.directory / "pixels.arrow"
        try:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            chunks = table.column("blob").chunks
            # One chunk is the written layout: use it in place (combining would copy).
            column = chunks[0] if len(chunks) == 1 else table.column("blob").combine_chunks()
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{path}: cannot read pixels ({e})") from None
        _, offsets, data = column.buffers()
        offsets = np.frombuffer(offsets, np.int64)[column.offset:column.offset + len(column) + 1]
        return data, offsets

    def pixels(self, row: int) -> np.ndarray:
        """Decode the pixels of the mask at ``row`` (only its own bytes are read)."""
        data, offsets = self._blobs
        start, end = int(offsets[row]), int(offsets[row + 1])
        heights, widths = self._shape
        return decode_mask(data.slice(start, end - start), self.dtype, int(heights[row]),
                           int(widths[row]), self.info["codec"])

    def blob_size(self, row: int) -> int:
        _, offsets = self._blobs
        return int(offsets[row + 1] - offsets[row])

    @cached_property
    def index(self) -> SegmentIndex:
        try:
            counts = np.load(self.directory / "chi.npy", mmap_mode="r")
            eq = np.load(self.directory / "chi_eq.npy")
            stats = np.load(self.directory / "chi_stats.npy")
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.directory}: cannot read the index ({e})") from None
        edges = np.asarray(self.info["edges"], dtype=np.float64)
        cell = int(self.info["cell_size"])
        heights, widths = self._shape
        offsets = chi_offsets(heights, widths, cell, len(edges))
        if offsets[-1] != counts.shape[0]:
            raise StoreError(f"{self.directory / 'chi.npy'}: index size does not match the masks")
        return SegmentIndex(cell, edges, counts, offsets, eq, stats, heights, widths)

    def index_bytes(self) -> int:
        return sum((self.directory / f).stat().st_size
                   for f in ("chi.npy", "chi_eq.npy", "chi_stats.npy"))

    def pixel_bytes(self) -> int:
        return (self.directory / "pixels.arrow").stat().st_size
