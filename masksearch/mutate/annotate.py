"""``add_metadata``: columns of a table joined to the masks by a key column, in one commit.

The table is read and checked as an ingest's metadata is (types that fit the database's
columns, boxes, the row named in every error). Every row's key must match at least one mask
(unless ``allow_missing``) and no key may repeat; masks whose key no row has keep their
values. Nothing is paired by position.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ..errors import IngestError
from ..ingest.tables import read_metadata, typed_columns
from ..lang.mutations import FIXED
from ..store.changes import Change, key_text
from ..store.metadata import ARROW_TYPES
from ..store.snapshot import Snapshot
from ..store.store import Store
from ..store.writer import ColumnTypes
from .columns import rewritten_metadata


def add_metadata(store: Store, metadata: object, key: str = "image_id", *,
                 allow_missing: bool = False, box_format: str = "xyxy") -> int:
    """Join ``metadata``'s columns to the masks by ``key``; returns how many masks got
    values. A refused table changes nothing."""
    with store.writing() as snapshot:
        change, matched = _annotation(snapshot, metadata, key, allow_missing, box_format)
        if matched:
            store.commit(snapshot, change)
        del snapshot
        store.finish_write()
    return matched


def _annotation(snapshot: Snapshot, metadata: object, key: str, allow_missing: bool,
                box_format: str) -> tuple[Change, int]:
    columns = snapshot.columns
    db_key = next((c for c in columns if c.lower() == key.lower()), None)
    if db_key is None:
        raise IngestError(f"the database has no column {key!r} to join on; columns are: "
                          f"{', '.join(columns)}")
    # A file's columns that hold text in the database are read as text ('007' stays '007').
    text = [name for name, kind in columns.items() if kind == "string"]
    table = read_metadata(metadata, key if columns[db_key] == "string" else None, text)
    if table is None or key not in table.columns:
        raise IngestError(f"metadata: no key column {key!r} (name the column that names the "
                          "masks with key= or --key, e.g. image_id)")
    typed = typed_columns(table, columns, box_format)
    _, key_values = typed.pop(key)
    fixed = [n for n in typed if n.lower() in FIXED]
    if fixed:
        raise IngestError(f"{table.origin}: column {fixed[0]!r} cannot be set")
    for name, (kind, _) in typed.items():
        old = columns.get(name, "null")
        if old not in ("null", kind) and (old, kind) != ("float64", "int64"):
            raise IngestError(f"{table.origin}: column {name!r} holds {old} values in the "
                              f"database; the table gives {kind} values")
    types = ColumnTypes(columns)
    types.add(typed)
    kinds = types.ordered()
    row_of = _matches(snapshot, db_key, columns[db_key], key_values, table.row_name,
                      table.origin, allow_missing)
    hit = np.flatnonzero(row_of >= 0)
    segs = snapshot.table.column("_seg").to_numpy()[hit]
    rows = snapshot.table.column("_row").to_numpy()[hit]
    values = {name: arr.cast(ARROW_TYPES[kinds[name]]).take(pa.array(row_of[hit]))
              for name, (_, arr) in typed.items()}
    change = Change(columns=kinds)
    change.meta = rewritten_metadata(snapshot, segs, rows, values, kinds)
    return change, len(hit)


def _matches(snapshot: Snapshot, db_key: str, kind: str, keys: pa.Array,
             row_name: Callable[[int], str], origin: str, allow_missing: bool) -> np.ndarray:
    """Per live mask (in ``snapshot.table`` order), the metadata row with its key, or -1."""
    if keys.null_count:
        i = int(np.flatnonzero(keys.is_null().to_numpy(zero_copy_only=False))[0])
        raise IngestError(f"{origin}, {row_name(i)}: the key {db_key!r} is empty")
    try:
        theirs = key_text(keys, kind).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise IngestError(f"{origin}: the key column does not fit {db_key!r}, which holds "
                          f"{kind} values ({e})") from None
    first: dict[str, int] = {}
    for i, k in enumerate(theirs):
        if k in first:
            raise IngestError(f"{origin}, {row_name(i)}: key {k!r} appears twice (also "
                              f"{row_name(first[k])})")
        first[k] = i
    ours = key_text(snapshot.table.column(db_key), kind).to_pylist()
    row_of = np.array([first.get(k, -1) for k in ours], np.int64)
    unmatched = sorted(set(range(len(theirs))) - set(row_of[row_of >= 0].tolist()))
    if unmatched and not allow_missing:
        shown = ", ".join(f"{theirs[i]!r} ({row_name(i)})" for i in unmatched[:5])
        raise IngestError(f"{origin}: {len(unmatched)} key(s) match no mask: {shown}"
                          f"{', ...' if len(unmatched) > 5 else ''} (allow_missing=True "
                          "or --allow-missing, skips them)")
    return row_of
