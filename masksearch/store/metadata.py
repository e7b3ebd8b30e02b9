"""Metadata columns: the small set of logical types and their Arrow form."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Set
from typing import Any, cast

import numpy as np
import pyarrow as pa

from ..errors import IngestError

BOX_TYPE = pa.struct([("x0", pa.int64()), ("y0", pa.int64()), ("x1", pa.int64()),
                      ("y1", pa.int64())])
ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
               "bool": pa.bool_(), "box": BOX_TYPE, "null": pa.null()}
SYSTEM_COLUMNS = {"mask_id": "int64", "image_id": None, "model_id": None, "mask_type": None,
                  "height": "int64", "width": "int64"}
RESERVED = set(SYSTEM_COLUMNS) | {"mask"}
INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _is_box_like(values: Iterable[Any]) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim == 2 and values.shape[1] == 4 and values.dtype.kind in "iu"
    non_null = [v for v in values if v is not None]
    return bool(non_null) and all(
        isinstance(v, (tuple, list, np.ndarray)) and len(v) == 4 for v in non_null)


def _box_array(name: str, values: Iterable[Any]) -> pa.Array:
    rows: list[dict[str, int] | None] = []
    for i, v in enumerate(values):
        if v is None:
            rows.append(None)
            continue
        try:
            coords = [int(c) for c in v]
            if any(float(c) != ic for c, ic in zip(v, coords, strict=True)) or any(
                    not INT64[0] <= ic <= INT64[1] for ic in coords):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise IngestError(f"metadata column {name!r}, row {i}: a box needs 4 integers "
                              f"(x0, y0, x1, y1), got {v!r}") from None
        rows.append(dict(zip(("x0", "y0", "x1", "y1"), coords, strict=True)))
    return pa.array(rows, BOX_TYPE)


def _scalar_type(name: str, values: list[object]) -> str:
    kinds = set()
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(v, (int, np.integer)):
            kinds.add("int64")
        elif isinstance(v, (float, np.floating)):
            kinds.add("float64")
        elif isinstance(v, str):
            kinds.add("string")
        else:
            raise IngestError(f"metadata column {name!r}: unsupported value {v!r} of type "
                              f"{type(v).__name__} (use numbers, strings, booleans or boxes)")
    if kinds == {"int64", "float64"}:
        return "float64"
    if len(kinds) > 1:
        raise IngestError(f"metadata column {name!r} mixes types: {', '.join(sorted(kinds))}")
    return kinds.pop()


def metadata_column(name: str, values: object, n: int,
                    label: str | None = None) -> tuple[str, pa.Array]:
    """The logical type and Arrow array of one user metadata column of length ``n``."""
    label = label or f"metadata column {name!r}"
    if isinstance(values, (str, bytes, Mapping, Set)) or not hasattr(values, "__len__"):
        raise IngestError(f"{label}: expected a sequence of {n} values, got "
                          f"{type(values).__name__}")
    # Anything else with a length is taken as a sequence of values.
    values = cast("Collection[Any]", values)
    if len(values) != n:
        raise IngestError(f"{label} has {len(values)} values for {n} masks")
    if _is_box_like(values):
        return "box", _box_array(name, values)
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise IngestError(f"metadata column {name!r}: expected one value per mask, got shape "
                          f"{values.shape} (boxes are (N, 4) integer arrays)")
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in items):
        return "null", pa.nulls(n)
    kind = _scalar_type(name, items)
    if kind == "float64":
        try:
            items = [None if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))
                     else float(v) for v in items]
        except OverflowError:
            raise IngestError(f"{label}: a value is beyond the float64 range") from None
        bad = next((i for i, v in enumerate(items) if v is not None and math.isinf(v)), None)
        if bad is not None:
            raise IngestError(f"{label}, row {bad}: infinite values are not supported "
                              "(use NULL)")
    for i, v in enumerate(items):
        if kind == "int64" and v is not None and not INT64[0] <= v <= INT64[1]:
            raise IngestError(f"{label}, row {i}: {v} does not fit a 64-bit integer")
        if kind == "string" and v is not None and not _is_unicode(v):
            raise IngestError(f"{label}, row {i}: {v!r} is not valid Unicode text")
    return kind, pa.array(items, ARROW_TYPES[kind])


def _is_unicode(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def id_column(name: str, values: object, n: int, nullable: bool) -> tuple[str, pa.Array]:
    """image_id / model_id / mask_type: a scalar for every mask or one value per mask."""
    if values is None or isinstance(values, (str, int, np.integer)):
        values = [values] * n
    kind, arr = metadata_column(name, values, n, label=name)
    if not nullable and arr.null_count:
        raise IngestError(f"{name} is required for every mask")
    if kind not in ("int64", "string", "null"):
        raise IngestError(f"{name} must be integers or strings, got {kind}")
    return kind, arr


def merged_type(name: str, old: str | None, new: str) -> str:
    """The column type after an ingest giving ``new`` values to a column holding ``old``."""
    if old is None or old == "null" or old == new:
        return new
    if new == "null":
        return old
    if {old, new} == {"int64", "float64"}:
        return "float64"
    raise IngestError(f"column {name!r} holds {old} values; this ingest gives {new}")
