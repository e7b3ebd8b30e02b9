"""Metadata changes as new per-segment metadata tables: UPDATE's new values, a column added
with its DEFAULT, a column dropped. Pixels are never rewritten."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import QueryError
from ..lang.mutations import BoundAddColumn, BoundDropColumn
from ..store.changes import Change
from ..store.metadata import ARROW_TYPES, BOX_TYPE
from ..store.snapshot import Snapshot

# Arrow types of computed values -> column types as stored.
LOGICAL = {pa.int64(): "int64", pa.float64(): "float64", pa.string(): "string",
           pa.bool_(): "bool", pa.null(): "null"}


def updated_segments(snapshot: Snapshot, found: pa.Table, columns: tuple[str, ...],
                     boxes: tuple[tuple[str, dict[str, int]], ...] = ()) -> Change:
    """The change setting ``columns`` to ``found``'s values (mask_id, then one column per
    assigned column, in order), and each column of ``boxes`` to its box."""
    types = dict(snapshot.manifest.columns)
    values: dict[str, pa.Array] = {}
    ids = found.column(0).to_numpy()
    for i, name in enumerate(columns):
        arr = found.column(i + 1).combine_chunks()
        types[name], values[name] = _fitted(name, types[name], arr, ids)
        if name in ID_COLUMNS:
            _check_ids(name, types[name], values[name], ids)
    for name, box in boxes:
        types[name], values[name] = "box", pa.array([box] * len(ids), BOX_TYPE)
    where = snapshot.locate_many(ids)
    change = Change(columns=types)
    change.meta = rewritten_metadata(snapshot, where.segment, where.row, values, types)
    return change


def rewritten_metadata(snapshot: Snapshot, segs: np.ndarray, rows: np.ndarray,
                       values: Mapping[str, pa.Array], types: Mapping[str, str]
                       ) -> dict[str, pa.Table]:
    """The metadata of every segment touched, with ``values`` set: value i of each column
    goes to row ``rows[i]`` of the segment at position ``segs[i]``; columns typed as in
    ``types``."""
    out: dict[str, pa.Table] = {}
    for k in np.unique(segs).tolist():
        state = snapshot.states[k]
        picked = np.flatnonzero(segs == k)
        meta = state.meta
        for name, arr in values.items():
            meta = set_rows(meta, name, ARROW_TYPES[types[name]], rows[picked],
                            arr.take(pa.array(picked)))
        out[state.info.name] = meta
    return out


ID_COLUMNS = ("image_id", "model_id", "mask_type")


class ColumnValueError(QueryError):
    """A value an UPDATE gives does not fit its column (``target``)."""

    def __init__(self, target: str, message: str):
        self.target = target
        super().__init__(message)


def _check_ids(name: str, kind: str, values: pa.Array, ids: np.ndarray) -> None:
    """As at ingest: ids are integers or text, and every mask has an image_id."""
    if kind not in ("int64", "string", "null"):
        raise ColumnValueError(name, f"{name} holds integers or text, not {kind} values")
    if name == "image_id" and values.null_count:
        i = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise ColumnValueError(name, "image_id is required for every mask; mask "
                               f"{ids[i]} would get NULL")


def _fitted(name: str, kind: str, arr: pa.Array, ids: np.ndarray) -> tuple[str, pa.Array]:
    """The column's type after the update and the values in it; values that do not fit
    (a fraction for a BIGINT column, an infinite number) are an error naming the mask."""
    got = LOGICAL.get(arr.type, "box" if pa.types.is_struct(arr.type) else None)
    if kind == "null":
        # An id column takes whole numbers as integers (as ingest stores them).
        kind = "int64" if name in ID_COLUMNS and got == "float64" else got or "null"
    if arr.type == pa.float64():
        floats = arr.to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isnan(floats) & ~np.isfinite(floats))
        if kind == "int64":
            with np.errstate(invalid="ignore"):
                unfit = (floats != np.floor(floats)) | ~np.isfinite(floats) \
                    | (np.abs(floats) >= 2.0**63)
            bad = np.flatnonzero(~np.isnan(floats) & unfit)
        if len(bad):
            v = float(floats[bad[0]])
            raise ColumnValueError(name, f"column {name!r} holds {kind} values; mask "
                                   f"{ids[bad[0]]} would get {v!r}"
                                   + (" (infinite values are not supported)"
                                      if math.isinf(v) else ""))
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, pa.float64()), arr)
    return kind, arr.cast(ARROW_TYPES[kind])


def set_rows(meta: pa.Table, name: str, kind: pa.DataType, rows: np.ndarray,
              values: pa.Array) -> pa.Table:
    """``meta`` with ``values`` in column ``name`` at ``rows`` (the column added if absent)."""
    n = meta.num_rows
    old = meta.column(name).cast(kind).combine_chunks() if name in meta.column_names \
        else pa.nulls(n, kind)
    source = np.arange(n, dtype=np.int64)
    source[rows] = n + np.arange(len(rows))
    column = pa.concat_arrays([old, values.cast(kind)]).take(pa.array(source))
    if name in meta.column_names:
        return meta.set_column(meta.column_names.index(name), name, column)
    return meta.append_column(name, column)


def added_column(snapshot: Snapshot, bound: BoundAddColumn) -> Change:
    """ALTER TABLE ADD COLUMN: the column in the manifest; with a DEFAULT, every segment's
    metadata gets it, and so do later rows that do not give it."""
    columns = dict(snapshot.manifest.columns) | {bound.name: bound.kind}
    change = Change(columns=columns)
    if bound.default is None:
        return change
    change.defaults = dict(snapshot.manifest.defaults) | {bound.name: bound.default}
    kind = ARROW_TYPES[bound.kind]
    for state in snapshot.states:
        meta = state.meta
        change.meta[state.info.name] = meta.append_column(
            bound.name, pa.array([bound.default] * meta.num_rows, kind))
    return change


def dropped_column(snapshot: Snapshot, bound: BoundDropColumn) -> Change:
    """ALTER TABLE DROP COLUMN: gone from the manifest and from every segment's metadata
    (so that a column added later under the same name starts empty)."""
    columns = {k: v for k, v in snapshot.manifest.columns.items() if k != bound.name}
    defaults = {k: v for k, v in snapshot.manifest.defaults.items() if k != bound.name}
    change = Change(columns=columns, defaults=defaults)
    for state in snapshot.states:
        if bound.name in state.meta.column_names:
            change.meta[state.info.name] = state.meta.drop_columns([bound.name])
    return change
