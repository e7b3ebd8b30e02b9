"""Result values as JSON: finite numbers as numbers, NaN and infinities as strings, boxes as
objects, and nothing that JSON cannot carry."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from ..exec.stats import QueryStats


def json_value(v: Any) -> Any:
    """One value of a result, ready for ``json.dumps`` (which escapes every string)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def column_type(t: pa.DataType) -> str:
    """A column's type as the page shows it."""
    if pa.types.is_struct(t):
        return "box"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def table_rows(table: pa.Table, offset: int, limit: int) -> list[list[Any]]:
    """Rows ``offset`` .. ``offset + limit`` as lists of JSON values."""
    part = table.slice(offset, limit)
    columns = [c.to_pylist() for c in part.columns]
    return [[json_value(v) for v in row] for row in zip(*columns, strict=True)] \
        if columns else []


def stats_json(stats: QueryStats) -> dict[str, Any]:
    """The totals of a query's statistics (what the chart draws)."""
    keep = ("masks_total", "rejected_by_metadata", "accepted_by_index", "rejected_by_index",
            "verified", "bytes_read", "chis_built", "used_index", "seconds")
    out = {k: json_value(getattr(stats, k)) for k in keep}
    out["pruned"] = stats.pruned
    return out
