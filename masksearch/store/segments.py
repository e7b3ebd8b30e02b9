"""Segments: immutable directories holding the pixels, metadata and CHI of a batch of masks.

Files of a segment directory (format 2; every file is covered by a checksum):
  segment.json    dtype, codec, cell size, bin edges; sizes and XXH64 digests of pixels.arrow
                  and meta.parquet, and one digest per mask blob (``blobs_xxh64``), so reading
                  one mask verifies just its own bytes. Sealed: carries the digest of itself.
  pixels.arrow    Arrow IPC file, one row per mask, a ``blob`` column of compressed pixels;
                  memory-mapped, so reading mask i touches only its own bytes (on object
                  storage: one ranged read of them, see ``arrow_layout``)
  meta.parquet    the masks' metadata columns (mask_id, image_id, ..., height, width, user columns)
  chi_hist.lz4    the CHI counts as per-cell histograms, compressed (see chi_file.py);
                  chi_eq.npy (N, E); chi_stats.npy (N, 2). (Older segments: chi.npy, the
                  cumulative counts uncompressed, still read.)
  chi.json        sizes and digests of the three chi files, and the counts' dtype and
                  length; written last, so its presence
                  means the full index is complete. Verified whenever the index is loaded
                  (a damaged CHI would give wrong bounds without any pixel being read).
  chi-delta-xxh64-<digest>.npz  with lazy indexing, until the full index is built: the
                  CHIs of the masks that queries have read so far (each file written whole,
                  fsynced, then renamed in; named by the digest of its bytes)

Segments written before checksums (format 1: no "format" key in segment.json) are read
without verification; ``Store.check`` reports them as unverifiable.

Format 3 stores each mask's blob as tiles aligned with the CHI's cells (``tiles``: layout
in ``kernels.tile_kernels``; segment.json says ``"layout": "tiles"`` and the tile codec,
``"tiles": {"codec", "shuffle", "min_match"}``), so that verification decodes only the tiles
the index cannot settle. Formats 1 and 2 hold whole-mask blobs (``codec``), still read.
"""

from __future__ import annotations

import fnmatch
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..index.chi import (
    SegmentIndex,
    build_segment_index,
    chi_offsets,
    count_dtype,
    empty_segment_index,
    fill_segment_index,
    mask_range,
)
from ..parallel import chunks_in_order, for_chunks
from . import faults
from .checksum import (
    describe_file,
    digest,
    save_checked_npz,
    write_sealed_json,
)
from .chi_file import CountsEncoder, decode_counts, encode_counts
from .codec import decode_mask, encode_mask
from .durable import fsync_path, remove_file, write_atomic, write_bytes
from .files import Files, LocalFiles, RemoteFiles
from .index_cache import ResidentIndex, index_nbytes
from .numpy_arrow import array_numpy
from .overlays import read_parquet
from .pixels_file import Blobs, RangedBlobs, WholeBlobs
from .tiles import LAYOUT, TileCodec, decode_tiled, encode_tiled, tile_codec, writes_tiles

BLOB_SCHEMA = pa.schema([("blob", pa.large_binary())])
ENCODE_CHUNK = 32     # masks per unit of parallel ingest work
SEGMENT_FORMAT = 2
TILED_FORMAT = 3      # the masks' blobs in tiles (``tiles``)
INDEX_FILES = ("chi_eq.npy", "chi_stats.npy", "chi_hist.lz4")
LEGACY_COUNTS = "chi.npy"    # the counts, cumulative and uncompressed, before chi_hist.lz4
INDEX_SEAL = "chi.json"
DELTA_GLOB = "chi-delta-*.npz"


def _npy_bytes(array: np.ndarray) -> memoryview:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getbuffer()


def _write_index(directory: Path, index: SegmentIndex, counts: bytes | None = None) -> None:
    """The full index files, then chi.json (their digests): its presence means complete.
    ``counts``: ``encode_counts(index)`` if already made."""
    files = {}
    arrays: tuple[memoryview | bytes, ...] = (
        _npy_bytes(index.eq), _npy_bytes(index.stats),
        encode_counts(index) if counts is None else counts)
    for name, data in zip(INDEX_FILES, arrays, strict=True):
        write_atomic(directory / name, data)
        files[name] = {"size": len(data), "xxh64": digest(data)}
    write_sealed_json(directory / INDEX_SEAL, {
        "format": SEGMENT_FORMAT, "files": files,
        "counts": {"dtype": index.counts.dtype.name, "size": int(index.counts.size)}})


def _blob_array(blobs: list[pa.Buffer]) -> pa.Array:
    """The blobs as one large_binary array, copied once into a single buffer."""
    packer = BlobPacker(len(blobs), sum(b.size for b in blobs))
    packer.add(blobs)
    return packer.array()


class BlobPacker:
    """Blobs copied, in order, into one buffer as they come: the data of a large_binary
    array. The buffer starts at ``capacity`` bytes (its pages are only taken as written)
    and grows if the blobs need more."""

    def __init__(self, n: int, capacity: int):
        self.offsets = np.zeros(n + 1, np.int64)
        self.data = np.empty(max(capacity, 1), np.uint8)
        self.count = 0

    def add(self, blobs: Sequence[pa.Buffer]) -> None:
        """The next blobs."""
        end = int(self.offsets[self.count])
        need = end + sum(b.size for b in blobs)
        if need > self.data.size:
            grown = np.empty(max(need, self.data.size * 3 // 2), np.uint8)
            grown[:end] = self.data[:end]
            self.data = grown
        for b in blobs:
            stop = end + b.size
            self.data[end:stop] = np.frombuffer(b, np.uint8)
            self.count += 1
            self.offsets[self.count] = end = stop

    def array(self) -> pa.Array:
        """The blobs added (all ``n`` of them) as one large_binary array."""
        used = int(self.offsets[self.count])
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), self.count,
            [None, pa.py_buffer(self.offsets[:self.count + 1]),
             pa.py_buffer(self.data[:used])])


def _capacity(masks: list[np.ndarray]) -> int:
    """Room for the compressed masks: lz4 and zstd add at most about 1/255 of the input and
    a header to incompressible data (more is handled by growing)."""
    raw = sum(m.nbytes for m in masks)
    return raw + raw // 128 + 1024 * len(masks)


@dataclass
class EncodedSegment:
    """A segment's masks compressed (``blobs``, one large_binary array, and their
    ``digests``) and indexed, in memory: what ``write_encoded`` writes."""

    dtype: np.dtype
    blobs: pa.Array
    digests: list[str]
    edges: np.ndarray
    cell: int
    codec: str
    index: SegmentIndex | None
    counts: CountsEncoder | None
    guessed: bool = False       # edges guessed right (see ``encode_segment``'s ``fit``)
    tiles: TileCodec | None = None   # the blobs' tile codec (None: whole-mask blobs)


def write_segment(directory: Path, masks: list[np.ndarray], meta: pa.Table, edges: np.ndarray,
                  cell: int, codec: str,
                  on_encoded: Callable[[int], None] | None = None,
                  build_index: bool = True) -> None:
    """Write a complete segment into ``directory`` (which must not exist) and fsync it.

    ``on_encoded(k)`` is told after every batch of k masks compressed (for progress bars).
    """
    directory.mkdir(parents=True)
    faults.point("mkdir segment")
    write_encoded(directory, encode_segment(masks, edges, cell, codec, on_encoded,
                                            build_index), meta)


def encode_segment(masks: list[np.ndarray], edges: np.ndarray, cell: int, codec: str,
                   on_encoded: Callable[[int], None] | None = None,
                   build_index: bool = True,
                   fit: Callable[[np.ndarray], np.ndarray] | None = None) -> EncodedSegment:
    """Compress, checksum and index the masks of a new segment, on all cores.

    With ``fit``, ``edges`` is a guess: the masks' value ranges (``value_ranges``) come from
    the same pass as the rest (the CHI's min and max, or without an index a pass over each
    mask while it is in cache), ``fit(ranges)`` gives the segment's edges, and the index is
    built again with them if the guess was wrong (the result is the same either way).

    A database of the ``lz4`` codec writes its blobs in tiles of ``cell`` pixels
    (``tiles.writes_tiles``), of the tile codec measured best for the masks' dtype."""
    n = len(masks)
    tiles = tile_codec(masks[0].dtype) if n and writes_tiles(codec) else None
    blobs: list[pa.Buffer | None] = [None] * n
    digests: list[str] = [""] * n
    ranges = np.empty((n, 2))
    index, counts = _new_index(masks, edges, cell, build_index)

    def encode_and_index(start: int, stop: int) -> None:
        # One pass per chunk while its pixels are in cache: value ranges, compress,
        # checksum, index, and the index's on-disk form (histograms, shuffled).
        for i in range(start, stop):
            if fit is not None and index is None:
                mask_range(masks[i], ranges[i])
            blob = blobs[i] = (encode_mask(masks[i], codec) if tiles is None
                               else encode_tiled(masks[i], cell, tiles))
            digests[i] = digest(blob)
        if index is not None and counts is not None:
            fill_segment_index(index, start, masks[start:stop])
            counts.add(start, stop)

    # The caller's thread packs each chunk's blobs while the pool compresses the next ones.
    packer = BlobPacker(n, _capacity(masks))
    for start, stop in chunks_in_order(n, ENCODE_CHUNK, encode_and_index):
        packer.add(cast(list[pa.Buffer], blobs[start:stop]))
        blobs[start:stop] = [None] * (stop - start)
        if on_encoded is not None:
            on_encoded(stop - start)
    guessed = False
    if fit is not None:
        if index is not None:
            ranges = _chi_ranges(index)
        fitted = fit(ranges)
        guessed = fitted.shape == edges.shape and bool(np.all(fitted == edges))
        if not guessed:
            edges = fitted
            index, counts = _new_index(masks, edges, cell, build_index)
            for_chunks(n, ENCODE_CHUNK, _index_chunks(index, counts, masks))
    return EncodedSegment(masks[0].dtype, packer.array(), digests, edges, cell, codec, index,
                          counts, guessed, tiles)


def _chi_ranges(index: SegmentIndex) -> np.ndarray:
    """``value_ranges`` of the masks of a built index: its non-NaN minimum and maximum,
    (NaN, NaN) for a mask of NaNs only (whose CHI has (inf, -inf))."""
    ranges = index.stats.copy()
    ranges[ranges[:, 0] > ranges[:, 1]] = np.nan
    return ranges


def _new_index(masks: list[np.ndarray], edges: np.ndarray, cell: int,
               build_index: bool) -> tuple[SegmentIndex | None, CountsEncoder | None]:
    if not build_index:
        return None, None
    index = empty_segment_index(np.array([m.shape[0] for m in masks], np.int64),
                                np.array([m.shape[1] for m in masks], np.int64), edges, cell)
    return index, CountsEncoder(index)


def _index_chunks(index: SegmentIndex | None, counts: CountsEncoder | None,
                  masks: list[np.ndarray]) -> Callable[[int, int], None]:
    """A chunk's CHIs into ``index`` and ``counts`` (nothing without an index)."""
    def run(start: int, stop: int) -> None:
        if index is not None and counts is not None:
            fill_segment_index(index, start, masks[start:stop])
            counts.add(start, stop)
    return run


def write_encoded(directory: Path, encoded: EncodedSegment, meta: pa.Table) -> None:
    """Write the files of an encoded segment into ``directory`` (made, empty), fsynced."""
    e = encoded
    _write_files(directory, e.dtype, e.blobs, e.digests, meta, e.edges, e.cell, e.codec,
                 e.index, None if e.counts is None else e.counts.finish(), e.tiles)


def write_copied_segment(directory: Path, dtype: np.dtype, blobs: list[pa.Buffer],
                         digests: list[str], meta: pa.Table, index: SegmentIndex,
                         codec: str, tiles: TileCodec | None = None) -> None:
    """Write a segment of masks already compressed (``blobs``, their ``digests``; in tiles
    of codec ``tiles``, or whole) with their CHIs (``index``, every mask built): compaction
    moves masks without decoding them."""
    directory.mkdir(parents=True)
    faults.point("mkdir segment")
    _write_files(directory, dtype, _blob_array(blobs), digests, meta, index.edges,
                 index.cell, codec, index, tiles=tiles)


def _write_files(directory: Path, dtype: np.dtype, blobs: pa.Array, digests: list[str],
                 meta: pa.Table, edges: np.ndarray, cell: int, codec: str,
                 index: SegmentIndex | None, counts: bytes | None = None,
                 tiles: TileCodec | None = None) -> None:
    """The files of a new segment (``blobs``: the compressed masks as one large_binary
    array, in tiles of codec ``tiles`` or whole; ``counts``: the index's
    ``encode_counts``, if made), then its sealed description, each fsynced."""
    pixels_path = directory / "pixels.arrow"
    with pa.OSFile(str(pixels_path), "wb") as sink, \
            pa.ipc.new_file(sink, BLOB_SCHEMA) as writer:
        writer.write_table(pa.table({"blob": blobs}))
    faults.point("write pixels.arrow")
    fsync_path(pixels_path)
    sink = pa.BufferOutputStream()
    pq.write_table(meta, sink)
    meta_bytes = sink.getvalue()
    write_bytes(directory / "meta.parquet", meta_bytes)
    if index is not None:
        _write_index(directory, index, counts)
    info = {"format": SEGMENT_FORMAT, "dtype": dtype.name, "count": len(blobs),
            "codec": codec, "cell_size": cell, "edges": [float(e) for e in edges],
            "files": {"pixels.arrow": describe_file(pixels_path),
                      "meta.parquet": {"size": meta_bytes.size, "xxh64": digest(meta_bytes)}},
            "blobs_xxh64": digests}
    if tiles is not None:
        info |= {"format": TILED_FORMAT, "layout": LAYOUT, "tiles": tiles.describe()}
    write_sealed_json(directory / "segment.json", info, atomic=False)
    fsync_path(directory)


class Segment:
    """Read access to one committed segment, wherever its files are (``files``: a local
    folder, or a prefix on object storage). Files are read on first use and verified against
    their checksums; damage raises ``StoreError`` naming the file (and mask).

    ``whole_pixels``: read a remote pixels file whole (a check or a copy reads every mask),
    rather than one ranged read per mask."""

    def __init__(self, where: Path | Files, *, whole_pixels: bool = False):
        self.files = where if isinstance(where, Files) else LocalFiles(Path(where))
        self.whole_pixels = whole_pixels

    def __repr__(self) -> str:
        return f"Segment({self.files.label()!r})"

    @property
    def directory(self) -> Path:
        """The segment's local folder (what writes need)."""
        return self.files.path

    @property
    def name(self) -> str:
        return self.files.name

    @cached_property
    def info(self) -> dict:
        label = self.files.label("segment.json")
        info = self.files.read_sealed_json("segment.json", "segment description",
                                           legacy_ok=True)
        need = ["dtype", "codec", "cell_size", "edges"]
        if info.get("format", 1) >= 2:
            need += ["count", "files", "blobs_xxh64"]
        missing = [k for k in need if k not in info]
        if missing:
            raise StoreError(f"{label}: the segment description is damaged (no "
                             f"{', '.join(missing)})")
        if info.get("format", 1) >= 2 and len(info["blobs_xxh64"]) != info["count"]:
            raise StoreError(f"{label}: the segment description is damaged (mask count)")
        if info.get("format", 1) > TILED_FORMAT:
            raise StoreError(f"{label}: segment format {info['format']} is newer than this "
                             f"masksearch reads (up to {TILED_FORMAT}): upgrade masksearch")
        if info.get("format", 1) >= TILED_FORMAT:
            try:
                if info.get("layout") != LAYOUT:
                    raise ValueError(f"unknown layout {info.get('layout')!r}")
                TileCodec.of(info.get("tiles"))
            except ValueError as e:
                raise StoreError(f"{label}: the segment description is damaged ({e})") \
                    from None
        return info

    @cached_property
    def tiles(self) -> TileCodec | None:
        """The tile codec of a segment whose blobs are tiles (format 3), else None."""
        if self.info.get("format", 1) < TILED_FORMAT:
            return None
        return TileCodec.of(self.info["tiles"])

    @property
    def sealed(self) -> bool:
        """True for segments with checksums (format 2)."""
        return self.info.get("format", 1) >= 2

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info["dtype"])

    @cached_property
    def meta(self) -> pa.Table:
        name, label = "meta.parquet", self.files.label("meta.parquet")
        if self.sealed:
            data = self.files.read_checked(name, self.info["files"][name], "metadata file")
        else:
            data = self.files.read_file(name, "metadata file")
        try:
            table = read_parquet(pa.BufferReader(data))
        except MemoryError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{label}: cannot read metadata ({e})") from None
        if not {"mask_id", "height", "width"} <= set(table.column_names) or (
                self.sealed and table.num_rows != self.info["count"]):
            raise StoreError(f"{label}: the metadata file does not match the segment")
        return table

    def mask_label(self, row: int) -> str:
        """``mask <id>`` for error messages (``row <n>`` when the metadata is unreadable)."""
        try:
            return f"mask {self.meta.column('mask_id')[row].as_py()}"
        except Exception:  # the metadata may be the damaged part
            return f"row {row} of the segment"

    @cached_property
    def shapes(self) -> tuple[np.ndarray, np.ndarray]:
        """Heights and widths of the masks, by row (int64)."""
        return (array_numpy(self.meta.column("height")).astype(np.int64),
                array_numpy(self.meta.column("width")).astype(np.int64))

    @property
    def count(self) -> int:
        """Masks in the segment."""
        return len(self.shapes[0])

    def reload_index(self) -> None:
        """Forget the index read so far (another process may have built it since)."""
        self.__dict__.pop("_index_source", None)

    @cached_property
    def _blobs(self) -> Blobs:
        name, label = "pixels.arrow", self.files.label("pixels.arrow")
        expected = self.info["files"][name]["size"] if self.sealed else None
        try:
            blobs = self._open_blobs(name, expected)
        except FileNotFoundError:
            raise StoreError(f"{label}: the pixels file is missing") from None
        except (MemoryError, StoreError):
            raise
        except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as e:
            raise StoreError(f"{label}: the pixels file is damaged ({e})") from None
        if not blobs.matches(len(self.shapes[0])):
            raise StoreError(f"{label}: the pixels file is damaged (its blob offsets do not "
                             "match the masks)")
        return blobs

    def _open_blobs(self, name: str, expected: int | None) -> Blobs:
        """Local or ``whole_pixels``: the whole file (memory-mapped locally); else ranged
        reads. A file of another size than recorded is damaged (caught on open)."""
        if self.files.local or self.whole_pixels:
            source: pa.NativeFile | pa.Buffer = (
                self.files.random_access(name) if self.files.local else self.files.read(name))
            size = source.size() if isinstance(source, pa.NativeFile) else source.size
            self._check_size(name, size, expected)
            return WholeBlobs(source)
        file = self.files.random_access(name)
        self._check_size(name, file.size(), expected)
        return RangedBlobs(file, file.size(), len(self.shapes[0]))

    def _check_size(self, name: str, size: int, expected: int | None) -> None:
        if expected is not None and size != expected:
            raise StoreError(f"{self.files.label(name)}: the pixels file is damaged: {size} "
                             f"bytes, {expected} expected (truncated or overwritten)")

    @cached_property
    def _verified(self) -> np.ndarray:
        """Masks whose blob this process has verified already: a file held whole (memory-
        mapped) is immutable, so a blob is checked on its first read, not on every query.
        Blobs read from object storage are fetched, and verified, on every read."""
        return np.zeros(len(self.shapes[0]), bool)

    def blob(self, row: int) -> pa.Buffer:
        """The compressed bytes of the mask at ``row``, verified against its digest (on
        the first read in this process, for a file held whole)."""
        blobs = self._blobs
        try:
            blob = blobs.blob(row)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{self.files.label('pixels.arrow')}: cannot read "
                             f"{self.mask_label(row)} ({e})") from None
        if self.sealed and not self._verified[row]:
            if digest(blob, in_python=0) != self.info["blobs_xxh64"][row]:
                raise StoreError(f"{self.files.label('pixels.arrow')}: {self.mask_label(row)} "
                                 "is damaged (checksum mismatch)")
            self._verified[row] = blobs.keeps_bytes
        return blob

    def blob_spans(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blobs of masks ``rows`` for a kernel, each verified as ``blob`` verifies it:
        (data, starts, stops), mask ``rows[j]``'s bytes ``data[starts[j]:stops[j]]``. A file
        held whole gives its own (memory-mapped) bytes, not a copy; from object storage the
        blobs are fetched and joined."""
        rows = np.asarray(rows, np.int64)
        blobs = self._blobs
        if isinstance(blobs, WholeBlobs):
            if self.sealed:
                for row in rows[~self._verified[rows]].tolist():
                    self.blob(row)
            return (np.frombuffer(blobs.data, np.uint8), blobs.offsets[rows],
                    blobs.offsets[rows + 1])
        parts = [np.frombuffer(self.blob(row), np.uint8) for row in rows.tolist()]
        stops = np.cumsum([p.size for p in parts], dtype=np.int64)
        data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        return data, stops - np.array([p.size for p in parts], np.int64), stops

    @property
    def fetches_ahead(self) -> bool:
        """Its masks come by a request each (object storage), so asking ahead pays."""
        return isinstance(self.files, RemoteFiles)

    def prefetch(self, rows: Iterable[int]) -> None:
        """Start reading these masks' bytes now, several at once, when they come from object
        storage (a request each); nothing to do for a file on this machine."""
        self._blobs.prefetch(rows)

    def discard_prefetched(self, rows: Iterable[int]) -> None:
        """Forget what ``prefetch`` fetched for ``rows`` and nobody read (a stopped
        query), so that it holds no memory."""
        self._blobs.discard(rows)

    def pixels(self, row: int) -> np.ndarray:
        """Decode the pixels of the mask at ``row`` (only its own bytes are read; they are
        verified against the mask's digest)."""
        blob = self.blob(row)
        heights, widths = self.shapes
        try:
            tiles = self.tiles
            if tiles is not None:
                return decode_tiled(blob, self.dtype, int(heights[row]), int(widths[row]),
                                    int(self.info["cell_size"]), tiles)
            return decode_mask(blob, self.dtype, int(heights[row]), int(widths[row]),
                               self.info["codec"])
        except MemoryError:  # pyarrow's ArrowMemoryError is one: not damage
            raise
        except (pa.ArrowException, ValueError, OSError) as e:
            raise StoreError(f"{self.files.label('pixels.arrow')}: {self.mask_label(row)} "
                             f"cannot be decoded ({e})") from None

    def blob_size(self, row: int) -> int:
        return self._blobs.size(row)

    def has_full_index(self) -> bool:
        """The full index is complete: chi.json (or, in format 1, chi.npy) exists."""
        if self.files.exists(INDEX_SEAL):
            return True
        return not self.sealed and self.files.exists(LEGACY_COUNTS)

    @property
    def index(self) -> SegmentIndex:
        """The segment's CHI; with lazy indexing only the masks in ``built`` have one.

        A full index is held compressed and decoded into the process's bounded cache on
        demand (``index_cache``): hold the result for the length of a task, not longer."""
        source = self._index_source
        return source.decoded() if isinstance(source, ResidentIndex) else source

    @property
    def index_overview(self) -> SegmentIndex | ResidentIndex:
        """The index's small per-mask arrays (``built``, ``stats``, ``eq``), without
        decoding its counts."""
        return self._index_source

    def index_memory(self) -> tuple[int, int]:
        """Bytes of this segment's index held in memory (compressed, or for a lazy or legacy
        index its arrays) and decoded in the index cache now."""
        source = self._index_source
        if isinstance(source, ResidentIndex):
            return source.held_nbytes(), source.decoded_nbytes() if source.cached else 0
        return index_nbytes(source), 0

    @cached_property
    def _index_source(self) -> SegmentIndex | ResidentIndex:
        """A full index as held (compressed, or a legacy file memory-mapped), else the
        lazily built one: the masks queries have indexed so far, decoded."""
        if self.has_full_index():
            return self._load_full_index()
        edges = np.asarray(self.info["edges"], dtype=np.float64)
        cell = int(self.info["cell_size"])
        heights, widths = self.shapes
        offsets = chi_offsets(heights, widths, cell, len(edges))
        n = len(heights)
        max_pixels = int((heights * widths).max()) if n else 0
        dt = count_dtype(max_pixels)
        index = SegmentIndex(cell, edges, np.zeros(int(offsets[-1]), dt), offsets,
                             np.zeros((n, len(edges)), dt), np.zeros((n, 2)), heights, widths,
                             np.zeros(n, bool))
        for name in self.files.names(DELTA_GLOB):
            label = self.files.label(name)
            try:
                delta = self.files.read_checked_npz(name, "index delta")
            except FileNotFoundError:
                if self.has_full_index():
                    # build_index() completed meanwhile and removed the deltas.
                    return self._load_full_index()
                raise StoreError(f"{label}: the index delta vanished") from None
            try:
                self._merge(index, delta["rows"], delta["counts"], delta["eq"], delta["stats"])
            except (KeyError, IndexError, ValueError) as e:
                raise StoreError(f"{label}: the index delta does not match the segment "
                                 f"({e})") from None
        return index

    def _index_files(self) -> tuple[dict | None, dict[str, pa.Buffer]]:
        """chi.json's body (None in format 1, without one) and the index files it lists,
        each verified against it."""
        if not (self.files.exists(INDEX_SEAL) or self.sealed):
            names = (*INDEX_FILES[:2], LEGACY_COUNTS)
            return None, {name: self.files.read_file(name, "index file", mapped=True)
                          for name in names}
        seal = self.files.read_sealed_json(INDEX_SEAL, "index description")
        listed = seal.get("files", {})
        names = INDEX_FILES if INDEX_FILES[2] in listed else (*INDEX_FILES[:2], LEGACY_COUNTS)
        data = {}
        for name in names:
            if name not in listed:
                raise StoreError(f"{self.files.label(INDEX_SEAL)}: the index description "
                                 "is damaged")
            data[name] = self.files.read_checked(name, listed[name], "index file",
                                                 mapped=name == LEGACY_COUNTS)
        return seal, data

    def _load_full_index(self) -> SegmentIndex | ResidentIndex:
        """The full index as written by ingest or build_index(), verified: compressed
        counts to decode on demand, or (legacy chi.npy) the counts memory-mapped."""
        edges = np.asarray(self.info["edges"], dtype=np.float64)
        cell = int(self.info["cell_size"])
        heights, widths = self.shapes
        offsets = chi_offsets(heights, widths, cell, len(edges))
        n = len(heights)
        seal, data = self._index_files()
        compressed = seal is not None and INDEX_FILES[2] in seal["files"]
        counts_name = INDEX_FILES[2] if compressed else LEGACY_COUNTS
        try:
            eq = np.load(io.BytesIO(memoryview(data["chi_eq.npy"])))
            stats = np.load(io.BytesIO(memoryview(data["chi_stats.npy"])))
            if compressed:
                assert seal is not None  # compressed: read from the seal
                layout = seal["counts"]
                dtype, size = np.dtype(layout["dtype"]), int(layout["size"])
                if dtype.kind != "u" or size != offsets[-1]:
                    raise StoreError(f"{self.files.label(counts_name)}: index size does not "
                                     "match the masks")
            else:
                counts = npy_view(data[counts_name])
                if counts.ndim != 1 or offsets[-1] != counts.shape[0] or counts.dtype.kind != "u":
                    raise StoreError(f"{self.files.label(counts_name)}: index size does not "
                                     "match the masks")
        except (OSError, ValueError, EOFError, KeyError, TypeError, pa.ArrowException) as e:
            raise StoreError(f"{self.files.label()}: cannot read the index ({e})") from None
        if eq.shape != (n, len(edges)) or stats.shape != (n, 2):
            raise StoreError(f"{self.files.label()}: the index does not match the masks")
        if not compressed:
            return SegmentIndex(cell, edges, counts, offsets, eq, stats, heights, widths,
                                np.ones(n, bool))
        blob, label = data[counts_name], self.files.label(counts_name)

        def decode() -> np.ndarray:
            try:
                return decode_counts(blob, dtype, size, offsets, heights, widths, cell,
                                     len(edges))
            except (OSError, ValueError, pa.ArrowException) as e:
                raise StoreError(f"{label}: cannot read the index ({e})") from None

        # Keyed by where the files are and the counts' digest: a rebuilt index is another.
        assert seal is not None  # compressed: described by the seal
        key = (self.files.label(), str(seal["files"][counts_name]))
        return ResidentIndex(key, cell, edges, offsets, eq, stats, heights, widths,
                             np.ones(n, bool), size * dtype.itemsize, blob.size, decode)

    @staticmethod
    def _merge(index: SegmentIndex, rows: np.ndarray, counts: np.ndarray, eq: np.ndarray,
               stats: np.ndarray) -> None:
        n = len(index.built)
        sizes = np.diff(index.offsets)
        rows = np.asarray(rows, np.int64)
        if (rows.ndim != 1 or len(eq) != len(rows) or len(stats) != len(rows)
                or (len(rows) and (rows.min() < 0 or rows.max() >= n))
                or int(sizes[rows].sum()) != len(counts)):
            raise ValueError("rows, counts and sizes disagree")
        pos = 0
        for k, r in enumerate(rows):
            size = int(sizes[r])
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
        """Persist CHIs built elsewhere for ``rows`` (counts concatenated in row order).

        Queries call this without the writer lock: the delta file gets a fresh name and is
        written whole (with its digest), fsynced, then renamed in."""
        index = self.index
        new = ~index.built[rows]
        if not new.any():
            return 0
        save_checked_npz(self.directory, "chi-delta-",
                         {"rows": rows, "counts": counts, "eq": eq, "stats": stats})
        self._merge(index, rows, counts, eq, stats)
        return int(new.sum())

    def build_index(self, rebuild: bool = False) -> int:
        """Write the full index from the pixels; returns how many masks had no CHI before.

        Without ``rebuild``, a segment with a complete index is left alone. With it, the index
        is rebuilt from the (verified) pixels: chi.json goes first (and in format 1 chi.npy),
        so a crash midway leaves a segment without a full index (sound trivial bounds), never
        one whose files disagree. The caller holds the writer lock."""
        if not rebuild and self.has_full_index():
            return 0
        before = 0
        if not rebuild:
            before = int((~self.index_overview.built).sum())
        n = len(self.shapes[0])
        masks = [self.pixels(r) for r in range(n)]
        edges = np.asarray(self.info["edges"], dtype=np.float64)
        full = build_segment_index(masks, edges, int(self.info["cell_size"]))
        del masks
        if rebuild:
            for name in (INDEX_SEAL, LEGACY_COUNTS, INDEX_FILES[2]):
                remove_file(self.directory / name)
            fsync_path(self.directory)
        _write_index(self.directory, full)
        for path in self.directory.glob(DELTA_GLOB):
            remove_file(path)
        self.reload_index()
        return n if rebuild else before

    def index_bytes(self) -> int:
        names = {*INDEX_FILES, INDEX_SEAL, LEGACY_COUNTS}
        return sum(size for name, size in self.files.listing().items()
                   if name in names or fnmatch.fnmatchcase(name, DELTA_GLOB))

    def pixel_bytes(self) -> int:
        return self.files.size("pixels.arrow")


def npy_view(data: pa.Buffer) -> np.ndarray:
    """The array of an .npy file's bytes, read-only, without copying them (a memory-mapped
    file stays mapped)."""
    head = io.BytesIO(memoryview(data)[:1 << 17])
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype, count=count, offset=head.tell())
    return array.reshape(shape, order="F" if fortran else "C")
