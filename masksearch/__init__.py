"""masksearch: exact, index-accelerated queries over image masks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import os

    import duckdb

    from .api import Database, connect
    from .duckdb_ext import DuckDBAttachment
    from .ingest.coco import CocoSource
    from .result import QueryStats, Result

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
    "set_index_cache",
]
__version__ = "0.1.0"


# The engine (NumPy, Arrow, Numba, lark) loads on first use of one of these names, so that
# `import masksearch` and commands that need no engine start fast (docs/performance.md).
def __getattr__(name: str) -> Any:
    if name in ("Database", "connect"):
        from . import api

        value = getattr(api, name)
    elif name in ("QueryStats", "Result"):
        from . import result

        value = getattr(result, name)
    else:
        raise AttributeError(f"module 'masksearch' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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


def set_index_cache(budget: int | str | None) -> None:
    """Bytes of decoded index this process keeps in memory (``"512MB"``, ``"2GiB"``; ``0``:
    none; None: the adaptive default). Also ``MASKSEARCH_INDEX_CACHE`` in the environment
    (see ``masksearch.store.index_cache``)."""
    from .api import set_index_cache as set_budget

    set_budget(budget)
