"""A database directory: manifest, segments, the writer lock, and atomic ingest."""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import IngestError, StoreError
from ..index.chi import DEFAULT_CELL_SIZE
from .agg_cache import AggregateCache
from .changes import Change, next_manifest, replaced_rows
from .codec import CODECS
from .compaction import CompactionResult, chosen, compaction_change, upgrade_groups
from .durable import fsync_path, remove_file, remove_tree
from .files import Traffic, files_at
from .location import Location, location_of
from .manifest import MANIFEST, Manifest, SegmentInfo, read_manifest, write_manifest
from .numpy_arrow import array_numpy
from .overlays import DELETED_PREFIX, META_PREFIX
from .readers import ReaderPin, oldest_pinned
from .segments import (
    DELTA_GLOB,
    INDEX_FILES,
    INDEX_SEAL,
    LEGACY_COUNTS,
    Segment,
)
from .snapshot import SegmentState, Snapshot
from .writer import ColumnTypes, IngestBatch, ProgressFn, SegmentWriter

_TMP_NAME = re.compile(r"\.tmp-(\d+)$")   # temporary files: NAME.tmp-<pid of the writer>



@dataclass(frozen=True)
class WriteSettings:
    """How this connection writes: masks and pixel bytes per segment at most, how long a
    writer waits for another one to finish (seconds), and whether commits compact small
    segments by themselves (``store.compaction``)."""

    segment_masks: int = 4096
    segment_bytes: int = 256 << 20
    lock_timeout: float = 30.0
    auto_compact: bool = True     # compact after a commit that leaves too many small segments

    def __post_init__(self) -> None:
        if self.segment_masks < 1 or self.segment_bytes < 1:
            raise StoreError("segment sizes must be positive")
        if not self.lock_timeout >= 0:
            raise StoreError(f"lock_timeout must be >= 0 seconds, got {self.lock_timeout}")


class Store:
    """The files of one database. Readers see the last committed manifest; one writer at a
    time. ``create=False`` refuses a folder that holds no database instead of creating one;
    ``read_only=True`` implies it and refuses every write (``write_lock`` raises).

    ``root``: a local folder, or a ``Location`` on object storage (``s3://...``), which is
    only read: masksearch has no safe commit there (see ``refuse_remote_writes``)."""

    def __init__(self, root: str | os.PathLike | Location, *, cell_size: int | None = None,
                 bin_edges: dict | None = None, codec: str | None = None,
                 index: str | None = None, write: WriteSettings | None = None,
                 create: bool = True, read_only: bool = False, register: bool = True):
        """``register=False``: no reader registration (a cluster's worker: the client that
        sent it a query registers the state the query reads)."""
        self.location = location_of(root)
        self.remote = isinstance(self.location, Location)
        self.traffic = Traffic()      # what this connection read from object storage
        self.files = files_at(self.location, self.traffic)
        self.url = str(self.location)
        self.write = write or WriteSettings()
        self.read_only = read_only or self.remote
        if not self._has_manifest():
            if self.remote:
                raise StoreError(f"no masksearch database at {self.url} (databases get onto "
                                 "object storage by a copy: db.copy_to(url) or masksearch "
                                 "copy PATH URL)")
            if not create or read_only:
                raise StoreError(f"no masksearch database at {self.root}")
            self._create(cell_size, bin_edges, codec, index)
        elif cell_size is not None or bin_edges is not None or codec is not None \
                or index is not None:
            raise StoreError(f"{self.url}: index settings are chosen when a database is "
                             "created; this one exists already")
        self._manifest_key: tuple | None = None
        self._snapshot: Snapshot | None = None
        self._segments: dict[str, Segment] = {}    # opened once, shared by snapshots
        self._states: dict[tuple, SegmentState] = {}
        self._alive: weakref.WeakSet[Snapshot] = weakref.WeakSet()  # snapshots handed out
        self.aggregate_cache = AggregateCache(self.files)
        self._writing_thread: int | None = None   # the thread holding the writer lock
        self._pin = None if self.remote or not register else ReaderPin(self.root)
        self._closer = weakref.finalize(self, self._pin.close if self._pin else _nothing)
        self.refresh()
        if not self.remote:
            self._clean_on_open()

    @property
    def root(self) -> Path:
        """The database's local folder (what writes and cleanup need)."""
        return self.files.path

    @property
    def address(self) -> str | Location:
        """What another process opens this database by: its folder's absolute path (another
        process may run in another folder), or its ``Location`` on object storage
        (picklable: a cluster's workers get it)."""
        if isinstance(self.location, Location):
            return self.location
        return os.path.abspath(str(self.location))

    def retain(self, snapshots: list[Snapshot]) -> None:
        """Forget the segments and states that neither ``snapshots`` nor the latest
        snapshot use (a worker keeps a few states, not every one it ever read)."""
        kept = {id(state) for s in [*snapshots, self.snapshot()] for state in s.states}
        self._states = {k: v for k, v in self._states.items() if id(v) in kept}
        names = {key[0] for key in self._states}
        self._segments = {n: seg for n, seg in self._segments.items() if n in names}

    def _has_manifest(self) -> bool:
        try:
            return self.files.exists(MANIFEST)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{self.url}: cannot read the database ({e})") from None

    def close(self) -> None:
        """Withdraw this connection's reader registration (see ``readers``)."""
        self._closer()

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
                                           columns=columns, index=index,
                                           commit=uuid.uuid4().hex))

    def refresh(self) -> None:
        """Re-read the manifest if another writer committed since (a commit renames a new
        file over it: a new inode, whatever the clock's granularity)."""
        try:
            key = self.files.stat(MANIFEST)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{self.files.label(MANIFEST)}: cannot read the manifest ({e})"
                             ) from None
        if key == self._manifest_key:
            return
        manifest = read_manifest(self.files)
        states = [self._state(info) for info in manifest.segments]
        names = {info.name for info in manifest.segments}
        self._states = {k: v for k, v in self._states.items() if k[0] in names}
        self._segments = {k: v for k, v in self._segments.items() if k in names}
        self._snapshot = Snapshot(manifest, states)
        self._alive.add(self._snapshot)
        self._manifest_key = key
        # Snapshots still used by queries (of any thread) keep their versions pinned.
        if self._pin is not None:
            self._pin.set(min(s.manifest.version for s in self._alive))

    def snapshot_of(self, manifest: Manifest) -> Snapshot:
        """The state ``manifest`` describes (an older one than the latest, e.g. the one a
        query on another machine started from), whose files readers keep until released."""
        snapshot = Snapshot(manifest, [self._state(info) for info in manifest.segments])
        self._alive.add(snapshot)
        return snapshot

    def _state(self, info: SegmentInfo) -> SegmentState:
        key = (info.name, (info.meta or {}).get("name"), (info.deleted or {}).get("name"))
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = SegmentState(self.segment(info.name), info)
        return state

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
            seg = self._segments[name] = Segment(self.files.child("segments").child(name))
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
    def refuse_remote_writes(self) -> None:
        """Raise ``StoreError`` for a database on object storage: a commit replaces the
        manifest only if no other writer replaced it first, and object storage offers that
        (a conditional write) not everywhere, nor with the writer lock's guarantees; so
        masksearch only reads there."""
        if self.remote:
            raise StoreError(
                f"{self.url} is on object storage, which masksearch only reads: it has no safe "
                "commit there (no conditional write and writer lock to keep two writers from "
                "overwriting each other). Change a local copy instead: db.copy_to(path) or "
                "masksearch copy URL PATH, work on it, then copy it to a new URL")

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock (flock on ``lock``): one writer at a time. Waits up to
        ``timeout`` seconds (default: the ``lock_timeout`` setting), then raises ``StoreError``. The
        kernel releases the lock when its holder dies, so a killed writer never blocks.
        Every write starts here: a read-only store raises ``StoreError`` instead."""
        self.refuse_remote_writes()
        if self.read_only:
            raise StoreError(f"the database at {self.root} is open read-only: this connection "
                             "cannot write to it (connect without read_only=True to write)")
        if self._writing_thread == threading.get_ident():
            raise StoreError(f"{self.root}: this connection is writing already (a db.writer() "
                             "block is open): add masks through the writer, or change data "
                             "after its block")
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
            self._writing_thread = threading.get_ident()
            try:
                yield
            finally:
                self._writing_thread = None
        finally:
            os.close(fd)

    def _clean_on_open(self) -> None:
        """Remove what killed writers left, and retired files no reader uses, unless a
        writer is at work (then it will)."""
        try:
            with self.write_lock(timeout=0):
                self._remove_leftovers()
                self.collect_retired()
        except StoreError:
            pass  # a writer holds the lock, or the folder is read-only

    def _remove_leftovers(self) -> None:
        """Delete what killed processes left (the caller holds the writer lock): temporary
        manifests, uncommitted segment folders and per-segment files, partial indexes, and
        temporary files of dead processes (queries write index deltas without the lock, so
        live ones are kept). Retired files a reader may still use are kept too."""
        manifest = self.manifest
        committed = {s.name: s for s in manifest.segments}
        retired = manifest.retired_paths()
        for p in self.root.glob(f"{MANIFEST}.tmp-*"):
            remove_file(p)
        segments = self.root / "segments"
        for p in sorted(segments.iterdir()) if segments.is_dir() else []:
            if p.name in committed:
                self._remove_segment_leftovers(p, committed[p.name], retired)
            elif f"segments/{p.name}" not in retired:
                remove_tree(p)
        _remove_dead_tmps(self.root / "aggcache")

    def _remove_segment_leftovers(self, directory: Path, info: SegmentInfo,
                                  retired: set[str]) -> None:
        """In a committed segment: temporary files of dead processes, deletion vectors and
        metadata files no state uses, index deltas a full index supersedes, and index files
        of a build that died before chi.json."""
        _remove_dead_tmps(directory)
        used = {spec["name"] for spec in (info.meta, info.deleted) if spec is not None}
        for path in [*directory.glob(f"{DELETED_PREFIX}*"), *directory.glob(f"{META_PREFIX}*")]:
            if path.name not in used and f"segments/{directory.name}/{path.name}" not in retired:
                remove_file(path)
        if (directory / INDEX_SEAL).exists():
            for delta in directory.glob(DELTA_GLOB):
                remove_file(delta)
        elif _sealed(self.segment(directory.name)):
            for name in (*INDEX_FILES, LEGACY_COUNTS):
                if (directory / name).exists():
                    remove_file(directory / name)

    def collect_retired(self) -> None:
        """Remove the retired files no live reader's snapshot can use any more (the caller
        holds the writer lock)."""
        oldest = oldest_pinned(self.root)
        for entry in self.manifest.retired:
            if oldest is None or oldest >= entry["version"]:
                for path in entry["paths"]:
                    target = self.root / path
                    if target.is_dir():
                        remove_tree(target)
                    elif target.exists():
                        remove_file(target)

    @contextmanager
    def writing(self) -> Iterator[Snapshot]:
        """Hold the writer lock over the latest committed state (leftovers removed): what a
        statement that changes data starts from."""
        with self.write_lock():
            self.refresh()
            self._remove_leftovers()
            self.collect_retired()
            yield self.snapshot()

    def commit(self, snapshot: Snapshot, change: Change) -> Manifest:
        """Commit ``change`` to ``snapshot`` (the state ``writing`` gave) in one manifest
        rename; on any error, or Ctrl-C, the new files are removed and nothing changed."""
        outcome = next_manifest(self.root, snapshot, change)
        base = snapshot.manifest
        kept = tuple(e for e in base.retired
                     if any((self.root / p).exists() for p in e["paths"]))
        manifest = replace(outcome.manifest, version=base.version + 1,
                           retired=replace(base, retired=kept).retiring(outcome.retire),
                           commit=uuid.uuid4().hex)
        try:
            write_manifest(self.root, manifest)
        except BaseException:
            if self._committed(manifest) is False:
                for path in outcome.written:
                    remove_file(path)
            raise
        return manifest

    def _committed(self, manifest: Manifest) -> bool | None:
        """Whether ``manifest`` is the committed one (None: the manifest is unreadable)."""
        try:
            return read_manifest(self.root).version == manifest.version
        except StoreError:
            return None

    def finish_write(self) -> None:
        """After a commit (writer lock still held): read the new state, compact it if it
        holds too many small segments (``compaction``), remove what no reader needs."""
        self.refresh()
        if self.write.auto_compact and chosen(self.manifest, self.write.segment_masks, True):
            try:
                self._compact(auto=True)
            except StoreError as e:   # the statement itself is committed: say, go on
                warnings.warn(f"automatic compaction failed: {e}", stacklevel=3)
        self.collect_retired()

    def compact(self) -> CompactionResult:
        """Rewrite every small or partly deleted segment into full ones (one atomic
        commit) and drop cached CHIs of groups that can no longer exist."""
        with self.writing():
            result = self._compact(auto=False)
            self.collect_retired()
        return result

    def upgrade(self) -> CompactionResult:
        """Rewrite the segments whose pixels are not in the current layout (whole-mask blobs
        of databases written before tiles, segment format 3) into it: like compaction, in
        one manifest rename (a crash before it leaves the old state, after it the new one);
        the old files are removed once no reader's snapshot uses them. Deleted rows are
        dropped on the way. Nothing to do: no commit."""
        with self.writing():
            result = self._rewrite(upgrade_groups)
            result.segments_after = len(self.segments)
            self.collect_retired()
        return result

    def _rewrite(self, choose: Callable[[Snapshot], list[list[SegmentInfo]]]
                 ) -> CompactionResult:
        """Rewrite the groups of segments ``choose`` picks in the latest state, each into
        new segments, in one commit (the caller holds the writer lock)."""
        snapshot = self.snapshot()
        groups = choose(snapshot)
        result = CompactionResult(segments_before=len(snapshot.segments))
        if groups:
            written: list[Path] = []
            try:
                change, result.masks_rewritten = compaction_change(
                    self.root, snapshot, groups, self.write.segment_masks, written)
                self.commit(snapshot, change)
            except BaseException:
                self.roll_back(written)
                raise
            del snapshot
            self.refresh()
        return result

    def _compact(self, auto: bool) -> CompactionResult:
        """Compaction of the latest state (the caller holds the writer lock)."""
        result = self._rewrite(
            lambda snapshot: chosen(snapshot.manifest, self.write.segment_masks, auto))
        alive = np.sort(array_numpy(self.table().column("mask_id")))
        result.cached_chis_removed = self.aggregate_cache.prune(alive)
        result.segments_after = len(self.segments)
        return result

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

    def ingest(self, batches: Iterable[IngestBatch], *, progress: ProgressFn | None = None,
               index: bool | None = None, total: int | None = None,
               replace_on: tuple[str, ...] = ()) -> tuple[list[int], int]:
        """Add the masks of ``batches`` in one atomic commit; returns their new mask ids and
        how many masks they replaced.

        ``index``: build their CHIs now (default: as the database was created, eager or
        lazy). ``progress(done, total)`` is told how far it got (``total``: the number of
        masks, when the caller knows it). ``replace_on``: key columns; the same commit
        deletes the masks whose values of these columns equal a new mask's (NULL equals
        NULL here). Any error, or Ctrl-C, leaves the database as it was; the batches are
        consumed as they are written, so a stream of any length takes the memory of about
        one segment per pixel type.
        """
        with self.writing() as snapshot:
            manifest = snapshot.manifest
            types = ColumnTypes(manifest.columns)
            writer = self.segment_writer(manifest, types, index, progress, total, replace_on)
            try:
                for batch in batches:
                    writer.add(batch)
                if not writer.count:
                    raise IngestError("masks: nothing to ingest")
                change = Change(added=writer.finish(), columns=types.ordered(),
                                next_mask_id=manifest.next_mask_id + writer.count)
                if replace_on:
                    change.deleted = replaced_rows(snapshot, writer.keys(), types.ordered())
                committed = self.commit(snapshot, change)
            except BaseException:
                self.roll_back(writer.written)
                raise
            del snapshot
            self.finish_write()
        first = committed.next_mask_id - writer.count
        return list(range(first, first + writer.count)), change.rows_deleted()

    def segment_writer(self, manifest: Manifest, types: ColumnTypes, index: bool | None,
                       progress: ProgressFn | None = None, total: int | None = None,
                       keys: tuple[str, ...] = ()) -> SegmentWriter:
        """A writer of new segments for this connection's settings."""
        return SegmentWriter(
            self.root, manifest, types, segment_masks=self.write.segment_masks,
            segment_bytes=self.write.segment_bytes,
            build_index=manifest.index == "eager" if index is None else bool(index),
            progress=progress, total=total, keys=keys)

    def roll_back(self, written: list[Path]) -> None:
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


def _nothing() -> None:
    pass


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
