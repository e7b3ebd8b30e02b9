"""Files that change a committed segment without rewriting its pixels: a deletion vector
(which rows are deleted) and a rewritten metadata file (UPDATE, ALTER TABLE).

Each is a new file with a fresh name in the segment's folder, written whole and fsynced; the
manifest that names it (with its size and digest) is the commit. The files they replace stay
until no reader's snapshot can use them (``Store`` retires them).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from .checksum import digest
from .durable import fsync_path, write_bytes

if TYPE_CHECKING:
    from .files import Files

DELETED_PREFIX = "deleted-"
META_PREFIX = "meta-"


def read_parquet(source: pa.BufferReader | str) -> pa.Table:
    """A Parquet file as a table, read on this thread. ``pq.ParquetFile``, not
    ``pq.read_table``: the latter loads pyarrow.dataset and pandas (0.15 s of each start)."""
    with pq.ParquetFile(source) as f:
        return f.read(use_threads=False)


def write_deleted(directory: Path, deleted: np.ndarray) -> dict:
    """Write the deletion vector ``deleted`` (one bool per row) and describe it."""
    data = np.packbits(np.asarray(deleted, bool)).tobytes()
    name = f"{DELETED_PREFIX}{uuid.uuid4().hex[:16]}.bits"
    write_bytes(directory / name, data)
    fsync_path(directory)     # the file's name is durable before a manifest names it
    return {"name": name, "size": len(data), "xxh64": digest(data),
            "count": int(np.count_nonzero(deleted))}


def read_deleted(files: Files, spec: dict, rows: int) -> np.ndarray:
    """The deletion vector described by ``spec`` (in the segment's ``files``), verified:
    one bool per row."""
    data = files.read_checked(spec["name"], spec, "deletion vector")
    deleted = np.unpackbits(np.frombuffer(data, np.uint8), count=rows).astype(bool)
    if len(deleted) != rows or int(deleted.sum()) != spec["count"]:
        raise StoreError(f"{files.label(spec['name'])}: the deletion vector does not match "
                         "the segment")
    return deleted


def write_meta(directory: Path, table: pa.Table) -> dict:
    """Write a segment's metadata table as a new file and describe it."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue()
    name = f"{META_PREFIX}{uuid.uuid4().hex[:16]}.parquet"
    write_bytes(directory / name, data)
    fsync_path(directory)
    return {"name": name, "size": data.size, "xxh64": digest(data)}


def read_meta(files: Files, spec: dict, rows: int) -> pa.Table:
    """The metadata file described by ``spec`` (in the segment's ``files``), verified."""
    data = files.read_checked(spec["name"], spec, "metadata file")
    try:
        table = read_parquet(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{files.label(spec['name'])}: cannot read metadata ({e})") from None
    if table.num_rows != rows:
        raise StoreError(f"{files.label(spec['name'])}: the metadata file does not match "
                         "the segment")
    return table
