"""The manifest names the committed segments; replacing it atomically is the commit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import StoreError
from .checksum import sealed_json, write_sealed_json
from .files import Files, as_files

MANIFEST = "manifest.json"
FORMAT_VERSION = 5          # 5: segments may hold their pixels in tiles (segment format 3)
READABLE_FORMATS = (1, 2, 3, 4, 5)  # 1: written before checksums; read without verification
                                    # 2: the manifest and segment files carry checksums
                                    # 3: segments may have deleted rows and rewritten metadata
                                    # 4: each commit names itself (``commit``)


@dataclass(frozen=True)
class SegmentInfo:
    """A committed segment. ``count`` is its rows, deleted ones included. ``meta``: the
    file holding its metadata now, when a statement rewrote it (``{"name", "size",
    "xxh64"}``; else ``meta.parquet``); ``deleted``: its deletion vector (the same keys
    and ``count``, the rows deleted), when rows were deleted."""

    name: str
    count: int
    dtype: str
    first_mask_id: int
    meta: dict | None = None
    deleted: dict | None = None

    @property
    def live(self) -> int:
        """Rows not deleted."""
        return self.count - (self.deleted["count"] if self.deleted else 0)


@dataclass(frozen=True)
class Manifest:
    version: int = 0
    next_mask_id: int = 0
    cell_size: int = 16
    codec: str = "lz4"
    index: str = "eager"        # "eager": CHIs built at ingest; "lazy": built as queries read
    bin_edges: dict = field(default_factory=dict)  # dtype name -> list of edges (user override)
    columns: dict = field(default_factory=dict)    # column name -> logical type
    segments: tuple = ()
    defaults: dict = field(default_factory=dict)   # column -> value new rows get (ALTER)
    # Files no longer part of the database, kept while a reader may still use them:
    # ({"version": the commit that retired them, "paths": [relative to the root]}, ...).
    retired: tuple = ()
    # A random name of this committed state: two manifests with the same one describe the
    # same files (a copy keeps it). Empty in manifests written before format 4.
    commit: str = ""

    def identity(self) -> tuple[object, ...]:
        """What tells this state from every other, of this database or one that replaced it
        at the same place: its commit's name, or (older manifests) every segment's files."""
        if self.commit:
            return ("commit", self.commit)
        return ("files", self.version, tuple(
            (s.name, (s.meta or {}).get("name"), (s.deleted or {}).get("name"))
            for s in self.segments))

    def with_segments(self, new: list[SegmentInfo], next_mask_id: int, columns: dict) -> Manifest:
        return replace(self, version=self.version + 1, next_mask_id=next_mask_id,
                       columns=columns, segments=tuple(self.segments) + tuple(new))

    def retiring(self, paths: list[str]) -> tuple:
        """``retired`` with ``paths`` added, retired by the next version."""
        if not paths:
            return self.retired
        return (*self.retired, {"version": self.version + 1, "paths": sorted(paths)})

    def retired_paths(self) -> set[str]:
        return {p for entry in self.retired for p in entry["paths"]}


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Durably replace the manifest: write a temporary file, fsync, rename over, fsync the dir.

    This rename is the commit of every change to the database."""
    write_sealed_json(root / MANIFEST, _body(manifest))


def manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest file's content (what ``write_manifest`` writes)."""
    return sealed_json(_body(manifest))


def _body(manifest: Manifest) -> dict:
    body = asdict(manifest)
    body["format"] = FORMAT_VERSION
    return body


def read_manifest(root: Path | Files) -> Manifest:
    """The manifest of the database at ``root`` (a local folder or its ``Files``)."""
    files = as_files(root)
    path = files.label(MANIFEST)
    body = files.read_sealed_json(MANIFEST, "manifest", legacy_ok=True)
    fmt = body.pop("format", None)
    if fmt not in READABLE_FORMATS:
        raise StoreError(f"{path}: unknown format version {fmt!r} (this masksearch reads "
                         f"{', '.join(map(str, READABLE_FORMATS))})")
    try:
        body["segments"] = tuple(SegmentInfo(**s) for s in body["segments"])
        body["retired"] = tuple(body.get("retired", ()))
        return Manifest(**body)
    except (TypeError, KeyError) as e:
        raise StoreError(f"{path}: the manifest is damaged ({e})") from None
