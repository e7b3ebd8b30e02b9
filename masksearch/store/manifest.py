"""The manifest names the committed segments; replacing it atomically is the commit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import StoreError
from .checksum import read_sealed_json, write_sealed_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 2          # 2: the manifest and segment files carry checksums
READABLE_FORMATS = (1, 2)   # 1: written before checksums; read without verification


@dataclass(frozen=True)
class SegmentInfo:
    name: str
    count: int
    dtype: str
    first_mask_id: int


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

    def with_segments(self, new: list[SegmentInfo], next_mask_id: int, columns: dict) -> Manifest:
        return replace(self, version=self.version + 1, next_mask_id=next_mask_id,
                       columns=columns, segments=tuple(self.segments) + tuple(new))


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Durably replace the manifest: write a temporary file, fsync, rename over, fsync the dir.

    This rename is the commit of every change to the database."""
    body = asdict(manifest)
    body["format"] = FORMAT_VERSION
    write_sealed_json(root / MANIFEST, body)


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    body = read_sealed_json(path, "manifest", legacy_ok=True)
    fmt = body.pop("format", None)
    if fmt not in READABLE_FORMATS:
        raise StoreError(f"{path}: unknown format version {fmt!r} (this masksearch reads "
                         f"{', '.join(map(str, READABLE_FORMATS))})")
    try:
        body["segments"] = tuple(SegmentInfo(**s) for s in body["segments"])
        return Manifest(**body)
    except (TypeError, KeyError) as e:
        raise StoreError(f"{path}: the manifest is damaged ({e})") from None
