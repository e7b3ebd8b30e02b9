"""Metadata given to ``ingest``: a dict of columns, a pandas DataFrame, a pyarrow Table, or a
CSV or Parquet file, read into checked, typed columns (one value per row of the table).

Every value is checked where it is read, so an error names the file (or "metadata"), the
column and the row: a box that does not parse or is inverted, a value that does not fit the
type its column already has in the database. A column's type never changes because of one
bad value: a column of boxes with one malformed box is refused, not stored as text.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import IngestError
from ..store.metadata import id_column, metadata_column
from ..store.writer import TypedColumn

ID_COLUMNS = ("image_id", "model_id", "mask_type")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# A list of numbers as a CSV cell may hold a box: "1,2,3,4", "[1, 2, 3, 4]", "(1 2 3 4)".
_NUMBER_LIST = re.compile(rf"^\s*[\[({{]?\s*({_NUMBER}(?:\s*[,;\s]\s*{_NUMBER})*)\s*[\])}}]?\s*$")


@dataclass
class Metadata:
    """A metadata table: its columns as Python values, one per row, and how to name a row
    and the table in messages (``origin``: a file name, or "metadata")."""

    origin: str
    columns: dict[str, list[Any] | np.ndarray]
    n_rows: int
    from_file: bool = False

    def row_name(self, i: int) -> str:
        # A file's line: the header is line 1.
        return f"line {i + 2}" if self.from_file else f"row {i}"

    def label(self, name: str) -> str:
        return f"{self.origin}, column {name!r}" if self.from_file else \
            f"metadata column {name!r}"


def read_metadata(metadata: object, key: str | None,
                  text: Collection[str] = ()) -> Metadata | None:
    """The table of ``metadata`` (``key``: a column read as text, to join files by; a file's
    ``text`` columns are read as text too, where they hold text in the database)."""
    if metadata is None:
        return None
    if isinstance(metadata, (str, os.PathLike)):
        return _read_file(Path(metadata), key, text)
    if isinstance(metadata, Mapping):
        columns = {}
        for name, values in metadata.items():
            columns[name] = values if isinstance(values, np.ndarray) else _values(values, name)
        return Metadata("metadata", columns, _length(columns))
    if type(metadata).__name__ == "DataFrame" and hasattr(metadata, "columns"):
        metadata = pa.Table.from_pandas(metadata, preserve_index=False)
    if isinstance(metadata, pa.RecordBatch):
        metadata = pa.Table.from_batches([metadata])
    if isinstance(metadata, pa.Table):
        return Metadata("metadata", _arrow_columns(metadata, key), metadata.num_rows)
    raise IngestError(f"metadata must be a dict of columns, a pandas DataFrame, a pyarrow "
                      f"Table, or a CSV or Parquet file, got {type(metadata).__name__}")


def _values(values: object, name: str) -> list[Any]:
    if isinstance(values, (str, bytes, Mapping, AbstractSet)) or not isinstance(
            values, Iterable):
        raise IngestError(f"metadata column {name!r}: expected a sequence of values, one per "
                          f"mask, got {type(values).__name__}")
    return list(values)


def _length(columns: Mapping[str, Any]) -> int:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name!r}: {n}" for name, n in lengths.items())
        raise IngestError(f"metadata columns differ in length ({listed})")
    return next(iter(lengths.values()), 0)


def _read_file(path: Path, key: str | None, text: Collection[str] = ()) -> Metadata:
    if not path.is_file():
        raise IngestError(f"{path}: no such metadata file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            # The key column as text: "007" must stay "007" to match a file named 007.png.
            as_text = {name: pa.string() for name in [*([key] if key else []), *text]}
            options = pcsv.ConvertOptions(column_types=as_text, strings_can_be_null=True)
            table = pcsv.read_csv(path, convert_options=options)
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise IngestError(f"{path}: metadata must be a .csv or .parquet file")
    except (pa.ArrowException, OSError) as e:
        raise IngestError(f"{path}: cannot read metadata ({e})") from None
    seen: set[str] = set()
    for name in table.column_names:
        if name in seen:
            raise IngestError(f"{path}: column {name!r} appears twice")
        seen.add(name)
    return Metadata(path.name, _arrow_columns(table, key), table.num_rows, from_file=True)


def _arrow_columns(table: pa.Table, key: str | None) -> dict[str, list[Any] | np.ndarray]:
    out: dict[str, list[Any] | np.ndarray] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        kind = column.type
        if pa.types.is_struct(kind) and {f.name for f in kind} >= {"x0", "y0", "x1", "y1"}:
            out[name] = [None if v is None else (v["x0"], v["y0"], v["x1"], v["y1"])
                         for v in column.to_pylist()]
        elif name == key:
            out[name] = [None if v is None else str(v) for v in column.to_pylist()]
        else:
            out[name] = column.to_pylist()
    return out


def box_strings(values: list[Any], label: str, row_name: Callable[[int], str]
                ) -> list[Any] | None:
    """The values as 4-tuples when they are boxes written as text ("1,2,3,4", "[1, 2, 3,
    4]"): most of them read as 4 numbers; any other then is an error naming its row.
    None when the column is not a box column."""
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    if not present or not all(isinstance(v, str) for _, v in present):
        return None
    parsed = {i: _numbers(v) for i, v in present}
    boxes = sum(1 for numbers in parsed.values() if numbers is not None and len(numbers) == 4)
    if boxes * 2 <= len(present):
        return None
    out: list[Any] = [None] * len(values)
    for i, v in present:
        numbers = parsed[i]
        if numbers is None or len(numbers) != 4:
            raise IngestError(f"{label}, {row_name(i)}: {v!r} is not a box (4 numbers, as "
                              "the column's other values are)")
        out[i] = tuple(numbers)
    return out


def _numbers(text: str) -> list[float] | None:
    m = _NUMBER_LIST.match(text)
    if m is None:
        return None
    return [float(x) for x in re.split(r"[,;\s]+", m.group(1).strip())]


def typed_columns(table: Metadata, existing: Mapping[str, str], box_format: str
                  ) -> dict[str, TypedColumn]:
    """Every column of ``table`` checked and typed (id columns as ids), one value per row.
    A column the database has already keeps its type: values that do not fit are errors."""
    out: dict[str, TypedColumn] = {}
    for name, values in table.columns.items():
        label = table.label(name)
        if name in ID_COLUMNS:
            out[name] = id_column(name, values, table.n_rows, nullable=name != "image_id")
            continue
        if not isinstance(values, np.ndarray):
            values = box_strings(values, label, table.row_name) or _fit(
                values, existing.get(name), label, table.row_name)
        out[name] = metadata_column(name, values, table.n_rows, label=label,
                                    rows=table.row_name, box_format=box_format)
    return out


def _fit(values: list[Any], kind: str | None, label: str, row_name: Callable[[int], str]
         ) -> list[Any]:
    """Text values converted to the number, boolean or box type ``kind`` the column has in
    the database; the first that does not convert is an error naming its row."""
    if kind not in ("int64", "float64", "bool", "box"):
        return values
    if not any(isinstance(v, str) for v in values):
        return values
    out = []
    for i, v in enumerate(values):
        converted = _convert(v, kind) if isinstance(v, str) else v
        if converted is _BAD:
            wanted = {"int64": "an integer", "float64": "a number", "bool": "true or false",
                      "box": "a box (4 numbers)"}[kind]
            raise IngestError(f"{label}, {row_name(i)}: {v!r} is not {wanted}, as the "
                              f"column's {kind} values in the database are")
        out.append(converted)
    return out


_BAD = object()


def _convert(text: str, kind: str) -> Any:
    t = text.strip()
    try:
        if kind == "int64":
            return int(t)
        if kind == "float64":
            value = float(t)
            return value if math.isfinite(value) else _BAD
    except ValueError:
        return _BAD
    if kind == "bool":
        return {"true": True, "false": False, "1": True, "0": False}.get(t.lower(), _BAD)
    numbers = _numbers(t)
    return tuple(numbers) if numbers is not None and len(numbers) == 4 else _BAD
