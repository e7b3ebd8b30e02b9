"""masksearch: exact, index-accelerated queries over image masks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api import Database, connect
from .errors import (
    BindError,
    IngestError,
    MaskSearchError,
    QueryCancelled,
    QueryError,
    QuerySyntaxError,
    QueryTimeout,
    StoreError,
)
from .result import QueryStats, Result

if TYPE_CHECKING:
    import os

    import duckdb

    from .duckdb_ext import DuckDBAttachment
    from .ingest.coco import CocoSource

__all__ = [
    "BindError",
    "Database",
    "IngestError",
    "MaskSearchError",
    "QueryCancelled",
    "QueryError",
    "QueryStats",
    "QuerySyntaxError",
    "QueryTimeout",
    "Result",
    "StoreError",
    "attach_duckdb",
    "connect",
    "from_coco",
]
__version__ = "0.1.0"


def attach_duckdb(con: duckdb.DuckDBPyConnection, database: Database | str | os.PathLike[str],
                  *, table_name: str = "masks") -> DuckDBAttachment:
    """Attach a masksearch database to a DuckDB connection (see ``masksearch.duckdb_ext``)."""
    from .duckdb_ext import attach_duckdb as attach

    return attach(con, database, table_name=table_name)


def from_coco(path: str | os.PathLike[str],
              images_dir: str | os.PathLike[str] | None = None) -> CocoSource:
    """A COCO instances or results JSON file as a source for ``Database.ingest``: one bool
    mask per annotation, with its columns (see ``masksearch.ingest.coco``); needs the
    ``coco`` extra (pycocotools)."""
    from .ingest.coco import from_coco as read

    return read(path, images_dir=images_dir)
