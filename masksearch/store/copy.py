"""Copy a database to a new place (a local folder or object storage), consistently.

The copy reads one committed state (a snapshot, which this connection's reader registration
keeps while it copies), writes every file that state reads (verified against its checksum
on the way), each segment's files first, and the manifest last: until the manifest lands
there is no database at the destination, so a reader never sees half a copy. A copy that
fails removes what it wrote. Retired files, reader registrations and locks are not copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pyarrow as pa

from ..errors import StoreError
from .agg_cache import DIRECTORY as AGGCACHE
from .checksum import digest, parse_checked_npz, parse_sealed_json
from .files import Files
from .manifest import MANIFEST, SegmentInfo, manifest_bytes
from .segments import DELTA_GLOB, INDEX_FILES, INDEX_SEAL, LEGACY_COUNTS, Segment
from .settings import SETTINGS
from .snapshot import Snapshot

ProgressFn = Callable[[int, int], None]     # (bytes copied, bytes in all)


@dataclass(frozen=True)
class CopyResult:
    """What a copy wrote: files, bytes, and the destination."""

    destination: str
    files: int
    bytes: int
    masks: int


@dataclass(frozen=True)
class _File:
    """One file to copy: its folder (relative to the root), name, size, and how to verify
    it (``expected``: size and digest; ``npz``: named by its digest; else: sealed JSON or
    unverifiable)."""

    folder: str
    name: str
    size: int
    expected: dict | None = None
    npz: bool = False
    optional: bool = False      # written by queries: one that vanished is skipped


def copy_database(snapshot: Snapshot, source: Files, dest: Files,
                  progress: ProgressFn | None = None) -> CopyResult:
    """Copy the state ``snapshot`` of the database whose files are ``source`` to ``dest``,
    which must be empty (or not exist)."""
    _check_empty(dest)
    plan = _plan(snapshot, source)
    total = sum(f.size for f in plan)
    done = written = 0
    try:
        for f in plan:
            if _copy_file(source, dest, f):
                written += 1
            done += f.size
            if progress is not None:
                progress(done, total)
        # Every file and folder durable before the manifest names them (local folders).
        for folder in sorted({f.folder for f in plan}, key=lambda d: -d.count("/")):
            (dest.child(folder) if folder else dest).sync()
        dest.child("segments").sync()
        manifest = replace(snapshot.manifest, retired=())
        dest.write(MANIFEST, manifest_bytes(manifest), atomic=True)
    except BaseException:
        dest.remove_all()
        raise
    return CopyResult(dest.label(), written + 1, done, sum(s.live for s in manifest.segments))


def _check_empty(dest: Files) -> None:
    try:
        if dest.exists(MANIFEST):
            raise StoreError(f"a masksearch database exists at {dest.label()} already: a copy "
                             "never overwrites one (copy to a new place)")
        if not dest.is_empty():
            raise StoreError(f"{dest.label()} is not empty: a copy goes to a new place (a "
                             "folder or prefix that does not exist, or is empty)")
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{dest.label()}: cannot look at the destination ({e})") from None


def _plan(snapshot: Snapshot, source: Files) -> list[_File]:
    """Every file of the state, segments first (in manifest order), then the cached CHIs
    of aggregated masks and the settings."""
    plan: list[_File] = []
    for state in snapshot.states:
        plan += _segment_files(state.segment, state.info)
    cache = source.child(AGGCACHE)
    plan += [_File(AGGCACHE, n, s, npz=True, optional=True)
             for n, s in sorted(cache.listing().items()) if n.endswith(".npz")]
    if source.exists(SETTINGS):
        plan.append(_File("", SETTINGS, source.size(SETTINGS)))
    return plan


def _segment_files(segment: Segment, info: SegmentInfo) -> list[_File]:
    """A segment's files: its description, pixels and metadata, the overlays the manifest
    names, and its index (the full one, chi.json last, or the deltas lazy indexing wrote)."""
    folder = f"segments/{info.name}"
    listing = segment.files.listing()
    described = segment.info.get("files", {}) if segment.sealed else {}
    out = [_File(folder, "segment.json", listing.get("segment.json", 0))]
    for name in ("pixels.arrow", "meta.parquet"):
        out.append(_File(folder, name, listing.get(name, 0), described.get(name)))
    for spec in (info.meta, info.deleted):
        if spec is not None:
            out.append(_File(folder, spec["name"], spec["size"], spec))
    if INDEX_SEAL in listing:
        seal = segment.files.read_sealed_json(INDEX_SEAL, "index description")
        out += [_File(folder, n, e["size"], e)
                for n, e in sorted(seal.get("files", {}).items())]
        out.append(_File(folder, INDEX_SEAL, listing[INDEX_SEAL]))
    elif not segment.sealed and LEGACY_COUNTS in listing:   # format 1: no checksums
        out += [_File(folder, n, listing.get(n, 0)) for n in
                (INDEX_FILES[0], INDEX_FILES[1], LEGACY_COUNTS)]
    else:
        out += [_File(folder, n, listing[n], npz=True, optional=True)
                for n in segment.files.names(DELTA_GLOB)]
    return out


def _copy_file(source: Files, dest: Files, f: _File) -> bool:
    """Copy one file, verified; False for an optional one that vanished meanwhile."""
    src = source.child(f.folder) if f.folder else source
    try:
        data = src.read(f.name)
    except FileNotFoundError:
        if f.optional:
            return False
        raise StoreError(f"{src.label(f.name)}: the file is missing") from None
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{src.label(f.name)}: cannot read it ({e})") from None
    _verify(src, f, data)
    out = dest.child(f.folder) if f.folder else dest
    try:
        out.write(f.name, data)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{out.label(f.name)}: cannot write it ({e})") from None
    return True


def _verify(src: Files, f: _File, data: pa.Buffer) -> None:
    """The file's bytes are as recorded: a damaged source is never copied."""
    label = src.label(f.name)
    if f.expected is not None:
        if data.size != f.expected["size"] or digest(data) != f.expected["xxh64"]:
            raise StoreError(f"{label}: the file is damaged or changed (checksum mismatch): "
                             "not copied" + (" (an index rebuilt during the copy? copy again)"
                                             if f.name in INDEX_FILES else ""))
    elif f.npz:
        parse_checked_npz(data, f.name, label, "file")
    elif f.name.endswith(".json"):
        parse_sealed_json(data.to_pybytes(), label, "file", legacy_ok=True)
