"""Results as pictures: the entry points ``Result._repr_html_``, ``save_html`` and
``contact_sheet`` call (``masksearch.result`` knows the database and the bound query)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import MaskSearchError
from ..lang.binder import BoundQuery
from .cards import Gallery, Queryable, build_gallery
from .html import document_html, gallery_html
from .sheet import save_contact_sheet

NOTEBOOK_CARDS = 50
THUMB_SIZE = 160


def _gallery(database: Any, query: Any, table: pa.Table, limit: int, size: int) -> Gallery:
    db: Queryable | None = None if database is None or database.closed else database
    bound = query if isinstance(query, BoundQuery) else None
    return build_gallery(db, bound, table, limit=limit, size=size)


def notebook_html(database: Any, query: Any, table: pa.Table,
                  limit: int = NOTEBOOK_CARDS, size: int = THUMB_SIZE) -> str:
    """The HTML of up to ``limit`` cards and a line saying how many rows are not shown."""
    return gallery_html(_gallery(database, query, table, limit, size))


def save_html(database: Any, query: Any, table: pa.Table, path: str | os.PathLike[str], *,
              per_page: int, max_rows: int, size: int) -> int:
    """Write the self-contained paged document; returns the number of cards."""
    if per_page < 1 or max_rows < 0:
        raise MaskSearchError("per_page must be at least 1 and max_rows at least 0")
    gallery = _gallery(database, query, table, max_rows, size)
    title = query.text if isinstance(query, BoundQuery) else "masksearch result"
    Path(path).write_text(document_html(gallery, title, per_page), encoding="utf-8")
    return len(gallery.cards)


def contact_sheet(database: Any, query: Any, table: pa.Table, path: str | os.PathLike[str], *,
                  columns: int, max_rows: int, size: int) -> int:
    """Write the contact sheet PNG; returns the number of tiles."""
    if columns < 1 or max_rows < 0:
        raise MaskSearchError("columns must be at least 1 and max_rows at least 0")
    gallery = _gallery(database, query, table, max_rows, size)
    if gallery.note is not None:
        raise MaskSearchError(f"cannot make a contact sheet: {gallery.note}")
    save_contact_sheet(gallery, path, columns)
    return sum(1 for c in gallery.cards if c.thumbs)
