"""Reading what a request asks for: its JSON body and query-string parameters, each value
checked for type and bounds (a 4xx ``ApiError`` naming the field otherwise)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from .problems import ApiError

MAX_BODY = 1 << 20          # bytes of a JSON body
MAX_SQL = 100_000           # characters of one statement
MAX_SIZE = 4096             # longest side of a rendered picture
_ROI_BOX = re.compile(r"^\s*(-?\d{1,9})\s*,\s*(-?\d{1,9})\s*,\s*(-?\d{1,9})\s*,\s*(-?\d{1,9})\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NUMBER = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"
_RANGE = re.compile(rf"^\s*[\[(]{_NUMBER},{_NUMBER}[\])]\s*$")


@dataclass(frozen=True)
class QueryRequest:
    sql: str
    use_index: bool
    limit: int
    offset: int


@dataclass(frozen=True)
class RenderRequest:
    roi: str | tuple[int, int, int, int] | None
    range: str | None
    size: int | None
    legend: bool = True


async def json_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (415, 413 or 400 when it is not one)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the body is over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"malformed JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"\d{1,12}", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer")
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}")
    return value


def query_request(body: Mapping[str, Any], page_limit: int) -> QueryRequest:
    """``{"sql", "use_index", "limit", "offset"}``: only ``sql`` is required."""
    unknown = set(body) - {"sql", "use_index", "limit", "offset"}
    if unknown:
        raise ApiError(400, f"unknown field {sorted(unknown)[0]!r}; the fields are sql, "
                            "use_index, limit, offset")
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ApiError(400, "sql must be a non-empty string")
    if len(sql) > MAX_SQL:
        raise ApiError(400, f"sql is over {MAX_SQL} characters")
    use_index = body.get("use_index", True)
    if not isinstance(use_index, bool):
        raise ApiError(400, "use_index must be true or false")
    return QueryRequest(sql, use_index, _int(body.get("limit", 50), "limit", 0, page_limit),
                        _int(body.get("offset", 0), "offset", 0, 10**12))


def page(params: Mapping[str, str], page_limit: int) -> tuple[int, int]:
    """``offset`` and ``limit`` of the query string."""
    return (_int(params.get("offset", 0), "offset", 0, 10**12),
            _int(params.get("limit", 50), "limit", 0, page_limit))


def _roi(text: str | None) -> str | tuple[int, int, int, int] | None:
    if text is None or text.strip().lower() in ("", "full", "full_image"):
        return None
    box = _ROI_BOX.match(text)
    if box:
        x0, y0, x1, y1 = (int(v) for v in box.groups())
        return (x0, y0, x1, y1)
    if _NAME.match(text):
        return text
    raise ApiError(400, "roi must be full, a box column's name or x0,y0,x1,y1")


def render_request(params: Mapping[str, str]) -> RenderRequest:
    """``size``, ``roi``, ``range`` and ``legend`` (0 or 1) of a picture's query string."""
    unknown = set(params) - {"size", "roi", "range", "legend"}
    if unknown:
        raise ApiError(400, f"unknown parameter {sorted(unknown)[0]!r}; the parameters are "
                            "size, roi, range, legend")
    legend = params.get("legend", "1")
    if legend not in ("0", "1"):
        raise ApiError(400, "legend must be 0 or 1")
    size = params.get("size")
    rng = params.get("range")
    if rng is not None and not _RANGE.match(rng):
        raise ApiError(400, "range must look like (0.6, 1.0] or [0, 255]")
    return RenderRequest(_roi(params.get("roi")), rng,
                         None if size is None else _int(size, "size", 8, MAX_SIZE),
                         legend == "1")


def mask_id(value: int) -> int:
    if not 0 <= value < 2**63:
        raise ApiError(404, f"mask_id {value} does not exist", "not_found")
    return value
