"""Metadata columns: the small set of logical types and their Arrow form."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Set
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


def _is_box_like(values: Iterable[Any], box_format: str = "xyxy") -> bool:
    if isinstance(values, np.ndarray):
        kinds = "iu" if box_format == "xyxy" else "iuf"
        return values.ndim == 2 and values.shape[1] == 4 and values.dtype.kind in kinds
    non_null = [v for v in values if v is not None]
    return bool(non_null) and all(
        isinstance(v, (tuple, list, np.ndarray)) and len(v) == 4 for v in non_null)


RowName = Callable[[int], str]
BOX_FORMATS = ("xyxy", "xywh")


def _row(i: int) -> str:
    return f"row {i}"


def _box_coords(v: Any, box_format: str) -> list[int]:
    """Integer (x0, y0, x1, y1) of one box given as 4 numbers in ``box_format``. ``xyxy``
    takes integers (integral floats too); ``xywh`` takes any numbers, rounded outward as
    COCO boxes are: x0 = floor(x), y0 = floor(y), x1 = ceil(x + w), y1 = ceil(y + h)."""
    numbers = [float(c) for c in v]
    if len(numbers) != 4 or not all(math.isfinite(c) for c in numbers):
        raise ValueError
    if box_format == "xywh":
        x, y, w, h = numbers
        if w < 0 or h < 0:
            raise ValueError
        return [math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h)]
    coords = [int(c) for c in numbers]
    if any(c != ic for c, ic in zip(numbers, coords, strict=True)):
        raise ValueError
    return coords


def _box_array(label: str, values: Iterable[Any], rows: RowName = _row,
               box_format: str = "xyxy") -> pa.Array:
    boxes: list[dict[str, int] | None] = []
    needs = ("4 integers (x0, y0, x1, y1)" if box_format == "xyxy"
             else "4 numbers (x, y, width, height), width and height not negative")
    for i, v in enumerate(values):
        if v is None:
            boxes.append(None)
            continue
        try:
            coords = _box_coords(v, box_format)
            if any(not INT64[0] <= c <= INT64[1] for c in coords):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise IngestError(f"{label}, {rows(i)}: a box needs {needs}, got {v!r}") from None
        x0, y0, x1, y1 = coords
        if x1 < x0 or y1 < y0:
            raise IngestError(f"{label}, {rows(i)}: box {tuple(coords)} has x1 < x0 or y1 < y0 "
                              "(a box is x0, y0, x1, y1; for [x, y, width, height] boxes pass "
                              "box_format='xywh')")
        boxes.append(dict(zip(("x0", "y0", "x1", "y1"), coords, strict=True)))
    return pa.array(boxes, BOX_TYPE)


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


def metadata_column(name: str, values: object, n: int, label: str | None = None,
                    rows: RowName = _row, box_format: str = "xyxy") -> tuple[str, pa.Array]:
    """The logical type and Arrow array of one user metadata column of length ``n``;
    errors name the column by ``label`` and a value by ``rows(i)`` ("row 3", or a file's
    "line 5"); boxes are read in ``box_format``."""
    label = label or f"metadata column {name!r}"
    if box_format not in BOX_FORMATS:
        raise IngestError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    if isinstance(values, (str, bytes, Mapping, Set)) or not hasattr(values, "__len__"):
        raise IngestError(f"{label}: expected a sequence of {n} values, got "
                          f"{type(values).__name__}")
    # Anything else with a length is taken as a sequence of values.
    values = cast("Collection[Any]", values)
    if len(values) != n:
        raise IngestError(f"{label} has {len(values)} values for {n} masks")
    if _is_box_like(values, box_format):
        return "box", _box_array(label, values, rows, box_format)
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise IngestError(f"metadata column {name!r}: expected one value per mask, got shape "
                          f"{values.shape} (boxes are (N, 4) integer arrays)")
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in items):
        return "null", pa.nulls(n)
    kind = _scalar_type(name, items)
    if kind == "float64":
        items = _floats(items, label, rows)
    _check_values(kind, items, label, rows)
    return kind, pa.array(items, ARROW_TYPES[kind])


def _floats(items: list[Any], label: str, rows: RowName) -> list[Any]:
    """The values as floats (NaN as NULL); infinite ones are refused."""
    try:
        floats = [None if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))
                  else float(v) for v in items]
    except OverflowError:
        raise IngestError(f"{label}: a value is beyond the float64 range") from None
    bad = next((i for i, v in enumerate(floats) if v is not None and math.isinf(v)), None)
    if bad is not None:
        raise IngestError(f"{label}, {rows(bad)}: infinite values are not supported "
                          "(use NULL)")
    return floats


def _check_values(kind: str, items: list[Any], label: str, rows: RowName) -> None:
    """Integers within int64, text that is valid Unicode."""
    for i, v in enumerate(items):
        if kind == "int64" and v is not None and not INT64[0] <= v <= INT64[1]:
            raise IngestError(f"{label}, {rows(i)}: {v} does not fit a 64-bit integer")
        if kind == "string" and v is not None and not _is_unicode(v):
            raise IngestError(f"{label}, {rows(i)}: {v!r} is not valid Unicode text")


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
