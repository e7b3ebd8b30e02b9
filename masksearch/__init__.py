"""masksearch: exact, index-accelerated queries over image masks."""

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
]
__version__ = "0.1.0"


def attach_duckdb(con, database, *, table_name: str = "masks"):
    """Attach a masksearch database to a DuckDB connection (see ``masksearch.duckdb_ext``)."""
    from .duckdb_ext import attach_duckdb as attach

    return attach(con, database, table_name=table_name)
