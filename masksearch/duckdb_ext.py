"""masksearch from DuckDB SQL: one call attaches a database to a ``duckdb`` connection.

    import duckdb, masksearch
    con = duckdb.connect()
    ms = masksearch.attach_duckdb(con, "masks.msdb")

gives the connection
  masks                          the masks' metadata as a table (join it, window it, ...)
  cp(mask_id, roi, range)        exact CP: pixels of the mask inside ``roi`` whose value is in
                                 ``range``, written as in masksearch ('(0.6, 1.0]', '[0, inf)')
  cp_between(mask_id, roi, range, low, high)
                                 whether low <= CP <= high (a NULL end is open): the index
                                 decides most rows without reading their pixels
  area(mask_id, roi)             pixels of ``roi`` clipped to the mask
  box(x0, y0, x1, y1)            a box value; full_image() is the whole mask
A ``roi`` is any STRUCT(x0, y0, x1, y1): the masks' box columns, a user table's boxes, box().
``ms.query(sql)`` runs a whole masksearch statement and returns a DuckDB relation;
``ms.view(name, sql)`` makes its result a view that SQL can name. The ``masks`` table and the
views are snapshots, and the functions read the same state: ``ms.refresh()`` re-reads the
metadata and re-runs the views' statements, seeing ingests and changes by any process.

The functions are vectorized Arrow UDFs: DuckDB hands over 2048 rows at a time; each batch
gets CHI bounds first (coarse, then cell by cell) and reads pixels only for the rows those
leave undecided, as masksearch's own executor does.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from .api import Database, connect
from .errors import MaskSearchError, QueryError, StoreError
from .exec.regions import box_areas, clip_boxes
from .exec.row_counts import cp_exact_indexed, cp_in_interval
from .lang.binder import parse_range
from .ranges import Cut
from .store.snapshot import Snapshot

BOX_SQL = "STRUCT(x0 BIGINT, y0 BIGINT, x1 BIGINT, y1 BIGINT)"
FULL_IMAGE = 2 ** 31 - 1   # a box this large clips to the whole mask
FUNCTIONS = ("cp", "cp_between", "area")
MACROS = ("box", "full_image")
# A column as DuckDB hands it to an Arrow UDF.
ArrowColumn: TypeAlias = pa.Array | pa.ChunkedArray


class DuckDBAttachment:
    """A masksearch database attached to a DuckDB connection (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db: Database, table_name: str) -> None:
        self.con = con
        self.db = db
        self.table_name = table_name
        self._lock = threading.Lock()   # DuckDB may call UDFs from several threads
        self._views: dict[str, tuple[str, bool]] = {}   # name -> (statement, use_index)
        self.masks_read = 0     # masks whose pixels the functions decoded, since attaching
        self._snapshot: Snapshot | None = None   # the state the table and functions show

    # --- the SQL surface --------------------------------------------------------------
    def _install(self) -> None:
        con = self.con
        # DuckDB takes type="arrow" and null_handling="special" as its documentation writes
        # them; its type stubs accept only the enums, whose module is not the same in every
        # supported DuckDB version.
        con.create_function(  # type: ignore[call-overload]
            "cp", self._cp, ["BIGINT", BOX_SQL, "VARCHAR"], "BIGINT", type="arrow",
            null_handling="special")
        con.create_function(  # type: ignore[call-overload]
            "cp_between", self._cp_between, ["BIGINT", BOX_SQL, "VARCHAR", "DOUBLE", "DOUBLE"],
            "BOOLEAN", type="arrow", null_handling="special")
        con.create_function(  # type: ignore[call-overload]
            "area", self._area, ["BIGINT", BOX_SQL], "BIGINT", type="arrow",
            null_handling="special")
        con.execute("CREATE OR REPLACE TEMP MACRO box(x0, y0, x1, y1) AS "
                    f"CAST({{'x0': x0, 'y0': y0, 'x1': x1, 'y1': y1}} AS {BOX_SQL})")
        con.execute(f"CREATE OR REPLACE TEMP MACRO full_image() AS box(0, 0, {FULL_IMAGE}, "
                    f"{FULL_IMAGE})")
        self.refresh()

    def refresh(self) -> None:
        """Show the database as it is now (ingests, deletes, updates since attaching or the
        last refresh, by this process or any other): registers the ``masks`` table again
        and re-runs the statement of every view. The functions read the same state as the
        table, so a mask deleted meanwhile by another connection still reads back."""
        store = self.db.store
        store.refresh()
        snapshot = store.snapshot()
        # Every view's statement first: one that no longer runs (a column it names was
        # dropped) changes nothing, and says how to go on.
        results = {}
        for name, (sql, use_index) in self._views.items():
            try:
                results[name] = self._run_view(sql, use_index)
            except MaskSearchError as e:
                why = getattr(e, "message", str(e))
                raise MaskSearchError(f"view {name!r} no longer runs on the database "
                                      f"({why}); nothing was refreshed. Remove it with "
                                      f"drop_view({name!r}) or define it again with "
                                      "view()") from None
        self._snapshot = snapshot
        table = snapshot.table
        public = [n for n in table.column_names if not n.startswith("_")]
        self.con.register(self.table_name, table.select(public))
        for name, result in results.items():
            self.con.register(name, result)

    def query(self, sql: str, *, use_index: bool = True) -> duckdb.DuckDBPyRelation:
        """A masksearch statement's result as a DuckDB relation."""
        with self._lock:
            result = self.db.query(sql, use_index=use_index).to_arrow()
        return self.con.from_arrow(result)

    def view(self, name: str, sql: str, *, use_index: bool = True) -> None:
        """Register a masksearch statement's result as view ``name``: computed now, and
        again on every ``refresh()``."""
        self._register_view(name, sql, use_index)
        self._views[name] = (sql, use_index)

    def drop_view(self, name: str) -> None:
        """Remove view ``name`` (registered with ``view()``)."""
        if name not in self._views:
            raise MaskSearchError(f"no view {name!r}; the views are: "
                                  f"{', '.join(self._views) or 'none'}")
        del self._views[name]
        with contextlib.suppress(duckdb.Error, ValueError):
            self.con.unregister(name)

    def _register_view(self, name: str, sql: str, use_index: bool) -> None:
        self.con.register(name, self._run_view(sql, use_index))

    def _run_view(self, sql: str, use_index: bool) -> pa.Table:
        with self._lock:
            return self.db.query(sql, use_index=use_index).to_arrow()

    def detach(self) -> None:
        """Remove the functions, macros and views from the connection."""
        for name in FUNCTIONS:   # each may be removed already, or the connection closed
            with contextlib.suppress(duckdb.Error, ValueError):
                self.con.remove_function(name)
        for name in (self.table_name, *self._views):
            with contextlib.suppress(duckdb.Error, ValueError):
                self.con.unregister(name)
        for name in MACROS:
            with contextlib.suppress(duckdb.Error, ValueError):
                self.con.execute(f"DROP MACRO IF EXISTS {name}")

    # --- the UDFs ---------------------------------------------------------------------
    def _cp(self, ids: ArrowColumn, rois: ArrowColumn, ranges: ArrowColumn) -> pa.Array:
        return self._run(ids, rois, ranges, None, None)

    def _cp_between(self, ids: ArrowColumn, rois: ArrowColumn, ranges: ArrowColumn,
                    lows: ArrowColumn, highs: ArrowColumn) -> pa.Array:
        return self._run(ids, rois, ranges, lows, highs)

    def _area(self, ids: ArrowColumn, rois: ArrowColumn) -> pa.Array:
        with self._lock:
            rows, valid = self._rows(ids, rois)
            out = np.zeros(len(valid), np.int64)
            out[valid] = box_areas(rows.boxes)
            return pa.array(out, pa.int64(), mask=~valid)

    def _run(self, ids: ArrowColumn, rois: ArrowColumn, ranges: ArrowColumn,
             lows: ArrowColumn | None, highs: ArrowColumn | None) -> pa.Array:
        with self._lock:
            filtering = lows is not None
            out = np.zeros(len(ids), bool if filtering else np.int64)
            rows, valid = self._rows(ids, rois)
            pos_of = np.cumsum(valid) - 1      # batch row -> row of ``rows``
            ranges = ranges.combine_chunks() if isinstance(ranges, pa.ChunkedArray) else ranges
            if ranges.null_count:
                valid &= ~pc.is_null(ranges).to_numpy(zero_copy_only=False)
            if filtering:
                low = _doubles(lows, -np.inf)
                high = _doubles(highs, np.inf)
            assert self._snapshot is not None   # set on attaching
            segments = self._snapshot.segments
            # Usually one constant range for the whole batch.
            texts = pc.unique(ranges if valid.all() else ranges.filter(pa.array(valid)))
            texts = texts.to_pylist()
            for text in texts:
                lo, hi = _cuts(text)
                sel = np.flatnonzero(valid if len(texts) == 1 else valid & pc.equal(
                    ranges, text).fill_null(False).to_numpy(zero_copy_only=False))
                r = pos_of[sel]
                if filtering:
                    out[sel], read = cp_in_interval(segments, rows.seg[r], rows.row[r],
                                                    rows.boxes[r], lo, hi, low[sel], high[sel],
                                                    persist=not self.db.read_only)
                else:
                    out[sel], read = cp_exact_indexed(segments, rows.seg[r], rows.row[r],
                                                      rows.boxes[r], lo, hi,
                                                      persist=not self.db.read_only)
                self.masks_read += read
            return pa.array(out, mask=~valid)

    # --- helpers ----------------------------------------------------------------------
    def _rows(self, ids: ArrowColumn, rois: ArrowColumn) -> tuple[_Rows, NDArray[np.bool_]]:
        """Where the masks of the batch's non-NULL (mask_id, roi) pairs are, with their
        boxes clipped to them, and which batch rows those are. Unknown ids are an error."""
        snapshot = self._snapshot
        assert snapshot is not None   # set on attaching
        rois = rois.combine_chunks() if isinstance(rois, pa.ChunkedArray) else rois
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        # Struct fields with the struct's own NULLs folded in (a NULL box is NULL in each).
        fields = rois.flatten()
        valid = np.ones(len(ids), bool)
        for f in (ids, *fields):        # NULLs are rare: look for them only where they are
            if f.null_count:
                valid &= ~pc.is_null(f).to_numpy(zero_copy_only=False)
        try:
            where = snapshot.locate_many(_numbers(ids, valid))
        except StoreError as e:
            raise MaskSearchError(f"{e} in the masksearch database {self.db.path}") from None
        raw = np.stack([_numbers(f, valid) for f in fields], axis=1).astype(
            np.int64).reshape(-1, 4)
        boxes = clip_boxes(raw, where.height, where.width)
        return _Rows(where.segment, where.row, boxes), valid


@dataclass(frozen=True)
class _Rows:
    seg: np.ndarray     # segment position per row
    row: np.ndarray     # row in the segment
    boxes: np.ndarray   # (n, 4) boxes clipped to the mask


def _numbers(values: pa.Array, valid: np.ndarray) -> np.ndarray:
    """The values of the rows ``valid`` (which holds no NULL of ``values``)."""
    if values.null_count:
        values = pc.fill_null(values, 0)
    out = values.to_numpy(zero_copy_only=False)
    return out if valid.all() else out[valid]


def _doubles(values: ArrowColumn, fill: float) -> NDArray[np.float64]:
    return pc.fill_null(values, fill).to_numpy(zero_copy_only=False).astype(np.float64)


@lru_cache(maxsize=256)
def _cuts(range_text: str) -> tuple[Cut, Cut]:
    """The (lo, hi) cuts of a range written as in masksearch, e.g. '(0.6, 1.0]'."""
    try:
        return parse_range(range_text)
    except QueryError as e:
        raise QueryError(f"bad range {range_text!r}: {e.message} (write it as in "
                         "masksearch, e.g. '(0.6, 1.0]' or '[0, inf)')") from None


_attached: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, DuckDBAttachment] = \
    weakref.WeakKeyDictionary()


def _close_all() -> None:
    # A connection that still holds Python functions at interpreter exit makes DuckDB's
    # bindings print leak reports. Removing the functions is not always possible then (an
    # unfinished result blocks it), so attached connections are closed, silently.
    for con in list(_attached.keys()):
        with contextlib.suppress(duckdb.Error):
            con.close()


atexit.register(_close_all)


def attach_duckdb(con: duckdb.DuckDBPyConnection, database: Database | str | os.PathLike[str],
                  *, table_name: str = "masks") -> DuckDBAttachment:
    """Attach a masksearch database (a ``Database`` or a path) to ``con``: registers the
    ``masks`` table and the ``cp``, ``cp_between``, ``area``, ``box`` and ``full_image``
    functions; attaching again replaces the previous database. Returns the attachment
    (``query``, ``view``, ``refresh``, ``detach``)."""
    db = database if isinstance(database, Database) else connect(database, create=False)
    previous = _attached.pop(con, None)
    if previous is not None:        # the functions' names are global: one database per con
        previous.detach()
    attachment = DuckDBAttachment(con, db, table_name)
    attachment._install()
    _attached[con] = attachment
    return attachment
