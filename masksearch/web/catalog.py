"""The side panel's facts about the database: its columns with their types, and for each
metadata column how many masks have each of its most common values."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..api import Database
from .values import json_value

TOP_VALUES = 12
MANY = 100                          # columns with more distinct values list none of them
_SKIP = {"mask_id", "height", "width"}   # one value per mask, or shown as shapes


def _order(value: Any) -> tuple[int, Any]:
    """Values of one column in their natural order (numbers as numbers), NULL last."""
    if value is None:
        return (2, 0)
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _value_counts(column: pa.ChunkedArray) -> dict[str, Any]:
    counts = pc.value_counts(column)
    values = counts.field("values").to_pylist()
    numbers = counts.field("counts").to_pylist()
    pairs = sorted(zip(values, numbers, strict=True), key=lambda p: (-p[1], _order(p[0])))
    if len(pairs) > MANY:          # nearly one value a mask (ids, paths): the count says it
        return {"distinct": len(pairs)}
    return {"distinct": len(pairs),
            "top": [[json_value(v), n] for v, n in pairs[:TOP_VALUES]]}


def catalog(db: Database) -> dict[str, Any]:
    """Path, counts, columns with types and value counts, index facts."""
    info = db.info()
    columns = db.columns()
    table = db.query("SELECT * FROM masks").to_arrow() if info["masks"] else None
    described = []
    for name, kind in columns.items():
        entry: dict[str, Any] = {"name": name, "type": kind}
        if table is not None and name not in _SKIP and name in table.column_names:
            col = table.column(name)
            if kind == "box":
                entry["non_null"] = len(col) - col.null_count
            else:
                entry |= _value_counts(col)
        described.append(entry)
    return {"path": info["path"], "masks": info["masks"], "dtypes": info["dtypes"],
            "shapes": info["shapes"], "columns": described, "read_only": db.read_only,
            "index": {"mode": info["index_mode"], "indexed_masks": info["indexed_masks"],
                      "cell_size": info["cell_size"], "share": info["index_share"]},
            "image_root": getattr(db, "image_root", None)}
