"""A database directory: manifest, segments, the writer lock, and atomic ingest."""

from __future__ import annotations

import fcntl
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import IngestError, StoreError
from ..index.chi import DEFAULT_CELL_SIZE, default_edges, kernel_view
from .agg_cache import AggregateCache
from .codec import CODECS
from .durable import fsync_path, remove_file, remove_tree, replace
from .manifest import MANIFEST, Manifest, SegmentInfo, read_manifest, write_manifest
from .metadata import ARROW_TYPES, RESERVED, id_column, merged_type, metadata_column
from .segments import (
    DELTA_GLOB,
    INDEX_FILES,
    INDEX_SEAL,
    LEGACY_COUNTS,
    Segment,
    write_segment,
)
from .snapshot import Snapshot
from .sources import MaskSource

_TMP_NAME = re.compile(r"\.tmp-(\d+)$")   # temporary files: NAME.tmp-<pid of the writer>

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class WriteSettings:
    """How this connection writes: masks and pixel bytes per segment at most, and how long a
    writer waits for another one to finish (seconds)."""

    segment_masks: int = 4096
    segment_bytes: int = 256 << 20
    lock_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.segment_masks < 1 or self.segment_bytes < 1:
            raise StoreError("segment sizes must be positive")
        if not self.lock_timeout >= 0:
            raise StoreError(f"lock_timeout must be >= 0 seconds, got {self.lock_timeout}")


class Store:
    """The files of one database. Readers see the last committed manifest; one writer at a
    time. ``create=False`` refuses a folder that holds no database instead of creating one;
    ``read_only=True`` implies it and refuses every write (``write_lock`` raises)."""

    def __init__(self, root: str | os.PathLike, *, cell_size: int | None = None,
                 bin_edges: dict | None = None, codec: str | None = None,
                 index: str | None = None, write: WriteSettings | None = None,
                 create: bool = True, read_only: bool = False):
        self.root = Path(root)
        self.write = write or WriteSettings()
        self.read_only = read_only
        if not (self.root / MANIFEST).exists():
            if not create or read_only:
                raise StoreError(f"no masksearch database at {self.root}")
            self._create(cell_size, bin_edges, codec, index)
        elif cell_size is not None or bin_edges is not None or codec is not None \
                or index is not None:
            raise StoreError(f"{self.root}: index settings are chosen when a database is "
                             "created; this one exists already")
        self._manifest_key: tuple | None = None
        self._snapshot: Snapshot | None = None
        self._segments: dict[str, Segment] = {}    # opened once, shared by snapshots
        self.aggregate_cache = AggregateCache(self.root)
        self.refresh()
        self._clean_on_open()

    # --- creation and reading -------------------------------------------------------------
    def _create(self, cell_size: int | None, bin_edges: dict | None, codec: str | None,
                index: str | None) -> None:
        """Create an empty database; the manifest, written last, makes it one. A creation
        killed before that leaves only what ``_unfinished_creation`` recognizes."""
        if self.root.exists() and any(not _unfinished_creation(p) for p in self.root.iterdir()):
            raise StoreError(f"{self.root}: the folder exists and is not a masksearch database")
        cell = DEFAULT_CELL_SIZE if cell_size is None else int(cell_size)
        if cell < 1:
            raise StoreError(f"cell_size must be a positive integer, got {cell_size}")
        index = index or "eager"
        if index not in ("eager", "lazy"):
            raise StoreError(f"index must be 'eager' or 'lazy', got {index!r}")
        codec = codec or "lz4"
        if codec not in CODECS:
            raise StoreError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
        edges = {}
        for dtype, values in (bin_edges or {}).items():
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim != 1 or not len(arr) or np.isnan(arr).any() or (np.diff(arr) <= 0).any():
                raise StoreError(f"bin_edges[{dtype!r}] must be increasing numbers")
            edges[np.dtype(dtype).name] = arr.tolist()
        (self.root / "segments").mkdir(parents=True, exist_ok=True)
        fsync_path(self.root)
        fsync_path(self.root.parent)
        # An empty database already has the system columns (types of ids are set by data).
        columns = {"mask_id": "int64", "image_id": "null", "model_id": "null",
                   "mask_type": "null", "height": "int64", "width": "int64"}
        write_manifest(self.root, Manifest(cell_size=cell, codec=codec, bin_edges=edges,
                                           columns=columns, index=index))

    def refresh(self) -> None:
        """Re-read the manifest if another writer committed since (a commit renames a new
        file over it: a new inode, whatever the clock's granularity)."""
        try:
            st = (self.root / MANIFEST).stat()
        except OSError as e:
            raise StoreError(f"{self.root / MANIFEST}: cannot read the manifest ({e})") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        if key == self._manifest_key:
            return
        manifest = read_manifest(self.root)
        self._snapshot = Snapshot(manifest, [self.segment(s.name) for s in manifest.segments])
        self._manifest_key = key

    def snapshot(self) -> Snapshot:
        """The committed state as of the last ``refresh``: what a query reads."""
        assert self._snapshot is not None
        return self._snapshot

    @property
    def manifest(self) -> Manifest:
        return self.snapshot().manifest

    def segment(self, name: str) -> Segment:
        seg = self._segments.get(name)
        if seg is None:
            seg = self._segments[name] = Segment(self.root / "segments" / name)
        return seg

    @property
    def segments(self) -> list[Segment]:
        """The committed segments, in manifest order (a shared list: do not modify it)."""
        return self.snapshot().segments

    def columns(self) -> dict[str, str]:
        """Every queryable column and its logical type."""
        return self.snapshot().columns

    def table(self) -> pa.Table:
        """All masks' metadata, with ``_seg`` and ``_row`` locating each mask's pixels."""
        return self.snapshot().table

    def locate(self, mask_id: int) -> tuple[Segment, int]:
        """The segment and row holding ``mask_id``."""
        return self.snapshot().locate(mask_id)

    # --- writing --------------------------------------------------------------------------
    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock (flock on ``lock``): one writer at a time. Waits up to
        ``timeout`` seconds (default: the ``lock_timeout`` setting), then raises ``StoreError``. The
        kernel releases the lock when its holder dies, so a killed writer never blocks.
        Every write starts here: a read-only store raises ``StoreError`` instead."""
        if self.read_only:
            raise StoreError(f"the database at {self.root} is open read-only: this connection "
                             "cannot write to it (connect without read_only=True to write)")
        timeout = self.write.lock_timeout if timeout is None else timeout
        path = self.root / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"{path}: cannot open the writer lock ({e})") from None
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreError(f"{self.root}: another process is writing to the "
                                         f"database (waited {timeout:g} s for {path})") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def _clean_on_open(self) -> None:
        """Remove what killed writers left, unless a writer is at work (then it will)."""
        try:
            with self.write_lock(timeout=0):
                self._remove_leftovers()
        except StoreError:
            pass  # a writer holds the lock, or the folder is read-only

    def _remove_leftovers(self) -> None:
        """Delete what killed processes left (the caller holds the writer lock): temporary
        manifests, uncommitted segment folders, partial indexes, and temporary files of dead
        processes (queries write index deltas without the lock, so live ones are kept)."""
        committed = {s.name for s in self.manifest.segments}
        for p in self.root.glob(f"{MANIFEST}.tmp-*"):
            remove_file(p)
        segments = self.root / "segments"
        for p in sorted(segments.iterdir()) if segments.is_dir() else []:
            if p.name in committed:
                self._remove_segment_leftovers(p)
            else:
                remove_tree(p)
        _remove_dead_tmps(self.root / "aggcache")

    def _remove_segment_leftovers(self, directory: Path) -> None:
        """In a committed segment: temporary files of dead processes, index deltas a full
        index supersedes, and index files of a build that died before chi.json."""
        _remove_dead_tmps(directory)
        if (directory / INDEX_SEAL).exists():
            for delta in directory.glob(DELTA_GLOB):
                remove_file(delta)
        elif _sealed(self.segment(directory.name)):
            for name in (*INDEX_FILES, LEGACY_COUNTS):
                if (directory / name).exists():
                    remove_file(directory / name)

    def build_index(self, progress: ProgressFn | None = None, rebuild: bool = False) -> int:
        """Build every missing CHI (lazy indexing); returns how many masks got one.

        ``rebuild=True`` rebuilds every segment's index from its (verified) pixels, replacing
        whatever is there (damaged or not), and empties the cache of aggregated-mask CHIs."""
        with self.write_lock():
            self.refresh()
            self._remove_leftovers()
            segments = self.segments
            total = sum(s.count for s in segments)
            done = built = 0
            for seg in segments:
                seg.reload_index()
                built += seg.build_index(rebuild=rebuild)
                done += seg.count
                if progress is not None:
                    progress(done, total)
            if rebuild:
                cache = self.root / "aggcache"
                for p in sorted(cache.iterdir()) if cache.is_dir() else []:
                    remove_file(p)
                self.aggregate_cache = AggregateCache(self.root)
            return built

    def ingest(self, sources: list[MaskSource], *, image_id: object, model_id: object,
               mask_type: object, metadata: dict | None, progress: ProgressFn | None = None,
               index: bool | None = None) -> list[int]:
        n = len(sources)
        user = self._user_columns(metadata, n)
        ids = {"image_id": id_column("image_id", image_id if image_id is not None else
                                     [s.stem for s in sources], n, nullable=False),
               "model_id": id_column("model_id", model_id, n, nullable=True),
               "mask_type": id_column("mask_type", mask_type, n, nullable=True)}
        with self.write_lock():
            self.refresh()
            self._remove_leftovers()
            columns = self._merged_columns(ids, user)
            written: list[Path] = []
            try:
                build = self.manifest.index == "eager" if index is None else bool(index)
                new = self._write_segments(sources, ids, user, columns, written, progress,
                                           build)
                manifest = self.manifest.with_segments(
                    new, self.manifest.next_mask_id + n, columns)
                write_manifest(self.root, manifest)
            except BaseException:
                self._roll_back(written)
                raise
            self.refresh()
        first = manifest.next_mask_id - n
        return list(range(first, first + n))

    def _roll_back(self, written: list[Path]) -> None:
        """Remove the folders of a failed ingest, unless its commit happened after all (the
        error came after the manifest's rename); if the manifest is unreadable, leave them
        to the next writer's cleanup."""
        try:
            committed = {s.name for s in read_manifest(self.root).segments}
        except StoreError:
            return
        for d in written:
            if d.name not in committed:
                remove_tree(d)

    def _user_columns(self, metadata: dict | None, n: int) -> dict[str, tuple[str, pa.Array]]:
        if metadata is not None and not isinstance(metadata, Mapping):
            raise IngestError(f"metadata must map column names to values, got "
                              f"{type(metadata).__name__}")
        user = {}
        known = {c.lower(): c for c in self.manifest.columns}
        for name, values in (metadata or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise IngestError(f"metadata column name {name!r} is not a valid identifier")
            if name.lower() in RESERVED or name.startswith("_"):
                raise IngestError(f"metadata column {name!r} is reserved (so are names "
                                  "starting with '_')")
            # Column names are case-insensitive in queries: 'Score' and 'score' would clash.
            other = known.get(name.lower())
            if other is not None and other != name:
                raise IngestError(f"metadata column {name!r} clashes with column {other!r} "
                                  "(names are case-insensitive)")
            known[name.lower()] = name
            user[name] = metadata_column(name, values, n)
        return user

    def _merged_columns(self, ids: dict, user: dict) -> dict[str, str]:
        columns = dict(self.manifest.columns) or {"mask_id": "int64"}
        for name, (kind, _) in list(ids.items()) + list(user.items()):
            columns[name] = merged_type(name, columns.get(name), kind)
        columns.setdefault("height", "int64")
        columns.setdefault("width", "int64")
        system = ["mask_id", "image_id", "model_id", "mask_type", "height", "width"]
        return {k: columns[k] for k in system} | {k: v for k, v in columns.items()
                                                   if k not in system}

    def _write_segments(self, sources: list[MaskSource], ids: dict[str, tuple[str, pa.Array]],
                        user: dict[str, tuple[str, pa.Array]], columns: dict[str, str],
                        written: list[Path], progress: ProgressFn | None,
                        build_index: bool) -> list[SegmentInfo]:
        m = self.manifest
        new: list[SegmentInfo] = []
        n = len(sources)
        done = {"loaded": 0, "written": 0}

        def report() -> None:
            # Loading and writing are each half the work; 100% only once all is written.
            if progress is not None:
                progress((done["loaded"] + done["written"]) // 2, n)

        def encoded(k: int) -> None:
            done["written"] += k
            report()

        pending: dict[str, list[int]] = {}
        pending_bytes: dict[str, int] = {}
        loaded: dict[int, np.ndarray] = {}

        def flush(dtype_name: str) -> None:
            rows = pending.pop(dtype_name)
            pending_bytes.pop(dtype_name)
            masks = [loaded.pop(i) for i in rows]
            take = pa.array(rows, pa.int64())
            arrays = {"mask_id": pa.array(np.asarray(rows, np.int64) + m.next_mask_id)}
            for name, (_, arr) in ids.items():
                arrays[name] = arr.take(take).cast(ARROW_TYPES[columns[name]])
            arrays["height"] = pa.array([mk.shape[0] for mk in masks], pa.int64())
            arrays["width"] = pa.array([mk.shape[1] for mk in masks], pa.int64())
            for name, (_, arr) in user.items():
                arrays[name] = arr.take(take)
            name = f"seg-{uuid.uuid4().hex[:16]}"
            tmp = self.root / "segments" / f"tmp-{name}"
            written.append(tmp)
            write_segment(tmp, masks, pa.table(arrays), self._edges_for(masks), m.cell_size,
                          m.codec, on_encoded=encoded,
                          build_index=build_index)
            final = self.root / "segments" / name
            replace(tmp, final)
            written.append(final)
            new.append(SegmentInfo(name, len(masks), dtype_name, int(arrays["mask_id"][0].as_py())))

        for i, src in enumerate(sources):
            pixels = src.load()
            key = pixels.dtype.name
            loaded[i] = pixels
            pending.setdefault(key, []).append(i)
            pending_bytes[key] = pending_bytes.get(key, 0) + pixels.nbytes
            done["loaded"] += 1
            report()
            if len(pending[key]) >= self.write.segment_masks or \
                    pending_bytes[key] >= self.write.segment_bytes:
                flush(key)
        for key in list(pending):
            flush(key)
        return new

    def _edges_for(self, masks: list[np.ndarray]) -> np.ndarray:
        dtype = masks[0].dtype
        override = self.manifest.bin_edges.get(dtype.name)
        if override is not None:
            return np.asarray(override, dtype=np.float64)
        lo = min(float(np.nanmin(kernel_view(mk))) for mk in masks)
        hi = max(float(np.nanmax(kernel_view(mk))) for mk in masks)
        return default_edges(dtype, lo, hi)


def _unfinished_creation(path: Path) -> bool:
    """What a creation killed before its manifest leaves: an empty segments folder, a
    temporary manifest, the lock file."""
    if path.name == "segments":
        return path.is_dir() and not any(path.iterdir())
    return path.name == "lock" or path.name.startswith(f"{MANIFEST}.tmp-")


def _sealed(segment: Segment) -> bool:
    try:
        return segment.sealed
    except StoreError:
        return False  # damaged: leave it as it is for ``check`` to report


def _remove_dead_tmps(directory: Path) -> None:
    for tmp in directory.iterdir() if directory.is_dir() else []:
        if _is_dead_tmp(tmp.name):
            remove_file(tmp)


def _is_dead_tmp(name: str) -> bool:
    """A temporary file whose writer is gone (legacy names without a pid count as dead)."""
    if name.endswith((".tmp", ".tmp.npy")):
        return True
    m = _TMP_NAME.search(name)
    if m is None:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False
