"""A result's rows as cards: the values selected, the mask's metadata and its thumbnails
(the mask with the query's CP term drawn; for groups, some members and the aggregated
masks). What the HTML pages and the contact sheet are made of."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import pyarrow as pa

from ..errors import StoreError
from ..exec.mask_aggregate import aggregate_pixels
from ..lang import ast
from ..lang.binder import BoundQuery
from ..parallel import CORES
from ..store.store import Store
from .stored import Renderer, encode_png
from .terms import (
    aggregate_terms,
    range_arg,
    roi_arg,
    shown_term,
    term_text,
    where_text,
    with_columns,
)

MAX_MEMBERS = 4          # member thumbnails per group card
MAX_AGGREGATED = 256     # groups with more members get no aggregated picture
T = TypeVar("T")
R = TypeVar("R")


class Queryable(Protocol):
    """What cards need of a database (``masksearch.Database``)."""

    @property
    def store(self) -> Store: ...

    def query(self, sql: str) -> Any: ...

    def mask(self, mask_id: int) -> np.ndarray: ...

    def render_png(self, mask_id: int, roi: Any = None, range: Any = None,
                   size: Any = None) -> bytes: ...


@dataclass(frozen=True)
class Thumb:
    """One picture of a card: PNG bytes and what it shows."""

    png: bytes
    title: str
    mask_id: int | None = None


@dataclass(frozen=True)
class Card:
    """One row: its selected values, metadata (name, text) and pictures."""

    fields: tuple[tuple[str, str], ...]
    metadata: tuple[tuple[str, str], ...] = ()
    thumbs: tuple[Thumb, ...] = ()
    mask_id: int | None = None


@dataclass(frozen=True)
class Gallery:
    """The cards of a result's first rows; ``total`` rows in all; ``term`` the CP term
    drawn; ``note`` why there are no pictures, if there are none."""

    cards: list[Card]
    total: int
    term: str | None = None
    note: str | None = None


def value_text(v: object) -> str:
    """A value as a caption shows it (NULL, 6 significant digits, boxes as box(...))."""
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict) and set(v) == {"x0", "y0", "x1", "y1"}:
        return "box({x0}, {y0}, {x1}, {y1})".format(**v)
    return str(v)


def _parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if len(items) <= 1 or CORES == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(CORES, 4), thread_name_prefix="masksearch-render") as pool:
        return list(pool.map(fn, items))


def _fields(table: pa.Table, n: int) -> list[tuple[tuple[str, str], ...]]:
    names = table.column_names
    columns = [c.to_pylist() for c in table.slice(0, n).columns]
    return [tuple((names[k], value_text(col[i])) for k, col in enumerate(columns))
            for i in range(min(n, table.num_rows))]


def _output_column(query: BoundQuery, name: str) -> int | None:
    for i, expr in enumerate(query.outputs):
        if isinstance(expr, ast.Column) and expr.name == name:
            return i
    return None


def _columns_of(db: Queryable, query: BoundQuery, table: pa.Table,
                names: list[str]) -> list[list[Any]] | None:
    """The values of columns ``names`` for each row of ``table``: from the result when
    selected as they are, else by running the query again with them appended."""
    where = [_output_column(query, n) for n in names]
    if all(i is not None for i in where):
        return [table.column(i).to_pylist() for i in where if i is not None]
    sql = with_columns(query.text, names)
    if sql is None:
        return None
    again = db.query(sql).to_arrow()
    if again.num_rows != table.num_rows:
        return None
    k = again.num_columns - len(names)
    return [again.column(k + j).to_pylist() for j in range(len(names))]


@dataclass(frozen=True)
class _Term:
    roi: Any
    range: Any
    text: str | None


def _term_of(cp: ast.CP | None) -> _Term:
    if cp is None:
        return _Term(None, None, None)
    return _Term(roi_arg(cp.roi), range_arg(cp.range), term_text(cp))


def _metadata(record: dict[str, Any], shown: set[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, value_text(v)) for k, v in record.items() if k not in shown)


def _mask_cards(db: Queryable, query: BoundQuery, table: pa.Table, n: int, size: int,
                term: _Term) -> list[Card] | None:
    got = _columns_of(db, query, table, ["mask_id"])
    if got is None:
        return None
    ids = [None if v is None else int(v) for v in got[0][:n]]
    records = Renderer(db.store).records([i for i in ids if i is not None])

    def thumb(mask_id: int | None) -> tuple[Thumb, ...]:
        if mask_id is None or mask_id not in records:   # deleted since the query ran
            return ()
        try:
            png = db.render_png(mask_id, term.roi, term.range, size)
        except StoreError:
            if mask_id in Renderer(db.store).records([mask_id]):
                raise
            return ()    # deleted meanwhile
        return (Thumb(png, f"mask {mask_id}", mask_id),)

    thumbs = _parallel(thumb, ids)
    fields = _fields(table, n)
    shown = {name for name, _ in fields[0]} if fields else set()
    return [Card(f, _metadata(records[i], shown) if i in records else _GONE if i is not None
                 else (), t, i) for f, t, i in zip(fields, thumbs, ids, strict=True)]


# The card of a mask deleted after its query ran: the row's values, no picture.
_GONE = (("mask", "deleted since the query ran"),)


def _members(db: Queryable, query: BoundQuery, keys: list[str]) -> dict[tuple, list[int]]:
    """Every group's member mask ids (those satisfying WHERE), by group key."""
    where = where_text(query.text)
    select = ", ".join(["mask_id", *keys])
    sql = f"SELECT {select} FROM masks" + (f" WHERE {where}" if where else "")
    table = db.query(sql).to_arrow()
    columns = [c.to_pylist() for c in table.columns]
    groups: dict[tuple, list[int]] = {}
    for i, mask_id in enumerate(columns[0]):
        groups.setdefault(tuple(c[i] for c in columns[1:]), []).append(int(mask_id))
    return {k: sorted(v) for k, v in groups.items()}


def _aggregated(db: Queryable, renderer: Renderer, members: list[int], cp: ast.CP,
                size: int) -> Thumb | None:
    if len(members) > MAX_AGGREGATED or cp.mask.aggregate is None:
        return None
    masks = [db.mask(m) for m in members]
    if len({m.shape for m in masks}) != 1:
        return None
    pixels = aggregate_pixels(cp.mask.aggregate, masks)
    record = renderer.records(members[:1]).get(members[0], {})
    img = renderer.render_pixels(pixels, record, db.store.columns(), roi_arg(cp.roi),
                                 range_arg(cp.range), size, source=renderer.source(record, False))
    title = f"{cp.mask.aggregate} of {len(members)} masks"
    return Thumb(encode_png(img), title)


def _group_cards(db: Queryable, query: BoundQuery, table: pa.Table, n: int, size: int,
                 term: _Term) -> list[Card] | None:
    keys = [c.name for c in query.group_by]
    values = _columns_of(db, query, table, keys) if keys else []
    if values is None:
        return None
    groups = _members(db, query, keys)
    renderer = Renderer(db.store)
    aggregates = aggregate_terms(query)

    def card(i: int, fields: tuple[tuple[str, str], ...]) -> Card:
        members = groups.get(tuple(v[i] for v in values), [])
        thumbs = [Thumb(db.render_png(m, term.roi, term.range, size), f"mask {m}", m)
                  for m in members[:MAX_MEMBERS]]
        for cp in aggregates:
            agg = _aggregated(db, renderer, members, cp, size)
            if agg is not None:
                thumbs.append(agg)
        listed = ", ".join(map(str, members[:12])) + (", ..." if len(members) > 12 else "")
        meta = (("members", f"{len(members)}: mask_id {listed}" if members else "0"),)
        return Card(fields, meta, tuple(thumbs))

    return _parallel(lambda pair: card(*pair), list(enumerate(_fields(table, n))))


def build_gallery(db: Queryable | None, query: BoundQuery | None, table: pa.Table, *,
                  limit: int, size: int = 160) -> Gallery:
    """The cards of the first ``limit`` rows of ``table``, the result of ``query`` on
    ``db``; without a database or query (or for EXPLAIN) cards carry values only."""
    n = min(limit, table.num_rows)
    if db is None or query is None or query.explain:
        return Gallery([Card(f) for f in _fields(table, n)], table.num_rows,
                       note="no pictures: not the result of a query on a database")
    term = _term_of(shown_term(query))
    build = _group_cards if query.grouped else _mask_cards
    cards = build(db, query, table, n, size, term)
    if cards is None:
        return Gallery([Card(f) for f in _fields(table, n)], table.num_rows,
                       note="no pictures: the rows could not be matched to masks")
    return Gallery(cards, table.num_rows, term.text)
