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

__all__ = ["connect", "Database", "Result", "QueryStats", "MaskSearchError", "QueryError",
           "QuerySyntaxError", "BindError", "StoreError", "IngestError",
           "QueryCancelled", "QueryTimeout"]
__version__ = "0.1.0"
