"""Errors the API answers with: a status code and a JSON body with a message, never a
traceback. Engine errors are mapped here; anything else is an internal error, logged."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    BindError,
    MaskSearchError,
    QueryCancelled,
    QueryError,
    QuerySyntaxError,
    QueryTimeout,
    StoreError,
)

log = logging.getLogger("masksearch.web")


class ApiError(Exception):
    """An answer other than 2xx: ``status``, a ``message`` and optional details."""

    def __init__(self, status: int, message: str, kind: str = "request",
                 **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "kind": self.kind, **self.details}


def _query_error(e: QueryError) -> ApiError:
    kind = "syntax" if isinstance(e, QuerySyntaxError) else \
        "bind" if isinstance(e, BindError) else "query"
    where = {"line": e.line, "column": e.column} if e.line is not None else {}
    return ApiError(400, e.message, kind, **where)


def from_exception(e: BaseException) -> ApiError:
    """The answer for an error raised while serving a request."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, QueryError):
        return _query_error(e)
    if isinstance(e, QueryTimeout):
        return ApiError(408, str(e), "timeout")
    if isinstance(e, QueryCancelled):
        return ApiError(409, str(e), "cancelled")
    if isinstance(e, StoreError):
        if "does not exist" in str(e):
            return ApiError(404, str(e), "not_found")
        return ApiError(500, str(e), "store")
    if isinstance(e, MaskSearchError):
        return ApiError(400, str(e), "query")
    log.error("internal error while serving a request", exc_info=e)
    return ApiError(500, f"internal error ({type(e).__name__}); the server's log has details",
                    "internal")
