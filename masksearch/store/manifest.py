"""The manifest names the committed segments; replacing it atomically is the commit."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import StoreError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Durably replace the manifest: write a temporary file, fsync, rename over, fsync the dir."""
    body = asdict(manifest)
    body["format"] = FORMAT_VERSION
    tmp = root / f"{MANIFEST}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(body, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / MANIFEST)
    _fsync_dir(root)


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: cannot read the manifest ({e})") from None
    if body.pop("format", None) != FORMAT_VERSION:
        raise StoreError(f"{path}: unknown format version")
    body["segments"] = tuple(SegmentInfo(**s) for s in body["segments"])
    return Manifest(**body)
