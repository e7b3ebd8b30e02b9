"""Segments: immutable directories holding the pixels, metadata and CHI of a batch of masks.

Files of a segment directory:
  segment.json    dtype, codec, cell size, bin edges, count dtype
  pixels.arrow    Arrow IPC file, one row per mask, a ``blob`` column of compressed pixels;
                  memory-mapped, so reading mask i touches only its own bytes
  meta.parquet    the masks' metadata columns (mask_id, image_id, ..., height, width, user columns)
  chi.npy         flat CHI counts; chi_eq.npy (N, E); chi_stats.npy (N, 2)
  chi-delta-*.npz with lazy indexing, until the full index is built: the CHIs of the masks
                  that queries have read so far (each file written whole, then renamed in)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..index.chi import SegmentIndex, build_segment_index, chi_offsets, count_dtype
from .codec import decode_mask, encode_mask

BLOB_SCHEMA = pa.schema([("blob", pa.large_binary())])


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_index(directory: Path, index: SegmentIndex) -> None:
    """The full index files; chi.npy is renamed in last, so its presence means complete."""
    for name, array in (("chi_eq", index.eq), ("chi_stats", index.stats),
                        ("chi", index.counts)):
        tmp = directory / f"{name}.tmp.npy"
        np.save(tmp, array)
        _fsync_file(tmp)
        os.replace(tmp, directory / f"{name}.npy")


def write_segment(directory: Path, masks: list[np.ndarray], meta: pa.Table, edges: np.ndarray,
                  cell: int, codec: str, workers: int,
                  on_encoded: Callable[[int], None] | None = None,
                  build_index: bool = True) -> None:
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
    with pa.OSFile(str(directory / "pixels.arrow"), "wb") as sink:
        with pa.ipc.new_file(sink, BLOB_SCHEMA) as writer:
            writer.write_table(pa.table({"blob": pa.array([b.to_pybytes() for b in blobs],
                                                          pa.large_binary())}))
    pq.write_table(meta, directory / "meta.parquet")
    if build_index:
        _write_index(directory, build_segment_index(masks, edges, cell))
    info = {"dtype": dtype.name, "count": len(masks), "codec": codec, "cell_size": cell,
            "edges": [float(e) for e in edges]}
    (directory / "segment.json").write_text(json.dumps(info))
    for name in ("pixels.arrow", "meta.parquet", "segment.json"):
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
        """The segment's CHI; with lazy indexing only the masks in ``built`` have one."""
        edges = np.asarray(self.info["edges"], dtype=np.float64)
        cell = int(self.info["cell_size"])
        heights, widths = self._shape
        offsets = chi_offsets(heights, widths, cell, len(edges))
        n = len(heights)
        if (self.directory / "chi.npy").exists():
            try:
                counts = np.load(self.directory / "chi.npy", mmap_mode="r")
                eq = np.load(self.directory / "chi_eq.npy")
                stats = np.load(self.directory / "chi_stats.npy")
            except (OSError, ValueError) as e:
                raise StoreError(f"{self.directory}: cannot read the index ({e})") from None
            if offsets[-1] != counts.shape[0]:
                raise StoreError(f"{self.directory / 'chi.npy'}: index size does not match "
                                 "the masks")
            return SegmentIndex(cell, edges, counts, offsets, eq, stats, heights, widths,
                                np.ones(n, bool))
        max_pixels = int((heights * widths).max()) if n else 0
        dt = count_dtype(max_pixels)
        index = SegmentIndex(cell, edges, np.zeros(int(offsets[-1]), dt), offsets,
                             np.zeros((n, len(edges)), dt), np.zeros((n, 2)), heights, widths,
                             np.zeros(n, bool))
        for path in sorted(self.directory.glob("chi-delta-*.npz")):
            try:
                with np.load(path) as delta:
                    self._merge(index, delta["rows"], delta["counts"], delta["eq"],
                                delta["stats"])
            except FileNotFoundError:
                if (self.directory / "chi.npy").exists():
                    # build_index() completed meanwhile and removed the deltas.
                    return self.index_from_files()
                raise StoreError(f"{path}: the index delta vanished") from None
            except (OSError, ValueError, KeyError) as e:
                raise StoreError(f"{path}: cannot read the index delta ({e})") from None
        return index

    def index_from_files(self) -> SegmentIndex:
        """The full index as written by ingest or build_index()."""
        return self.__class__.index.func(self)

    @staticmethod
    def _merge(index: SegmentIndex, rows, counts, eq, stats) -> None:
        pos = 0
        for k, r in enumerate(rows):
            size = int(index.offsets[r + 1] - index.offsets[r])
            index.counts[index.offsets[r]:index.offsets[r + 1]] = counts[pos:pos + size]
            pos += size
            index.eq[r], index.stats[r] = eq[k], stats[k]
            index.built[r] = True

    def add_index(self, rows: np.ndarray, masks: list[np.ndarray]) -> int:
        """Build and persist the CHIs of ``masks`` (rows of this segment); returns how many."""
        index = self.index
        todo = [(int(r), m) for r, m in zip(rows, masks, strict=True) if not index.built[r]]
        if not todo:
            return 0
        rows_todo = np.array([r for r, _ in todo], np.int64)
        part = build_segment_index([m for _, m in todo], index.edges, index.cell)
        return self.add_built(rows_todo, part.counts, part.eq, part.stats)

    def add_built(self, rows: np.ndarray, counts: np.ndarray, eq: np.ndarray,
                  stats: np.ndarray) -> int:
        """Persist CHIs built elsewhere for ``rows`` (counts concatenated in row order)."""
        index = self.index
        new = ~index.built[rows]
        if not new.any():
            return 0
        path = self.directory / f"chi-delta-{uuid.uuid4().hex[:16]}.npz"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, rows=rows, counts=counts, eq=eq, stats=stats)
        os.replace(tmp, path)
        self._merge(index, rows, counts, eq, stats)
        return int(new.sum())

    def build_index(self) -> int:
        """Write the full index from the pixels (what lazy indexing has not built yet)."""
        if (self.directory / "chi.npy").exists():
            return 0
        n = len(self._shape[0])
        masks = [self.pixels(r) for r in range(n)]
        _write_index(self.directory, build_segment_index(masks, self.index.edges,
                                                         self.index.cell))
        for path in self.directory.glob("chi-delta-*.npz"):
            path.unlink()
        missing = int((~self.index.built).sum())
        self.__dict__.pop("index", None)
        return missing

    def index_bytes(self) -> int:
        files = [self.directory / f for f in ("chi.npy", "chi_eq.npy", "chi_stats.npy")]
        files += list(self.directory.glob("chi-delta-*.npz"))
        return sum(f.stat().st_size for f in files if f.exists())

    def pixel_bytes(self) -> int:
        return (self.directory / "pixels.arrow").stat().st_size
