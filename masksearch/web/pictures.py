"""Pictures of masks for the page: the library's renderer run on the render workers, the
PNGs kept in an LRU cache; and a mask's source image, only from under the image root."""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..api import Database
from ..lang import ast
from .problems import ApiError
from .requests import RenderRequest

Key = tuple[int, object, object, object, bool]


class PngCache:
    """The last ``capacity`` rendered PNGs, least recently used dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Key, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Key) -> bytes | None:
        with self._lock:
            png = self._items.get(key)
            if png is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return png

    def put(self, key: Key, png: bytes) -> None:
        with self._lock:
            self._items[key] = png
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def render_png(db: Database, mask_id: int, req: RenderRequest) -> bytes:
    """The library's picture of one mask (501 when this masksearch has no renderer)."""
    render = getattr(db, "render_png", None)
    if render is None:
        raise ApiError(501, "this masksearch has no renderer (Database.render_png)",
                       "unavailable")
    try:
        png: bytes = render(mask_id, roi=req.roi, range=req.range, size=req.size,
                            legend=req.legend, confined=True)
    except (ValueError, KeyError, TypeError) as e:
        raise ApiError(400, f"cannot render mask {mask_id}: {e}") from None
    return png


IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".bmp": "image/bmp"}


def source_image(db: Database, mask_id: int) -> tuple[Path, str]:
    """The file of a mask's source image and its media type; 404 unless it resolves under
    the image root (the renderer's resolver refuses paths that leave it) and is an image."""
    from ..render.images import resolve_image  # the renderer's safe resolver

    rows = db.query(f"SELECT * FROM masks WHERE mask_id = {int(mask_id)}").to_pylist()
    if not rows:
        raise ApiError(404, f"mask_id {mask_id} does not exist", "not_found")
    value = rows[0].get("image_path")
    path = resolve_image(db.image_root, value) if isinstance(value, str) else None
    if path is None or not path.is_file():
        raise ApiError(404, f"mask {mask_id} has no source image under the image root",
                       "not_found")
    media = IMAGE_TYPES.get(path.suffix.lower())
    if media is None:
        raise ApiError(404, f"mask {mask_id}'s source is not an image file", "not_found")
    return path, media


MAX_CARD_ROWS = 240     # rows whose pictures the cards endpoint renders (all up to the page)


def group_cards(db: Database, sql: str, table: pa.Table, offset: int, limit: int,
                size: int) -> dict[str, Any]:
    """Pictures for rows that are not one mask each (groups, or rows without mask_id): the
    renderer's cards (a group's first members and its aggregated masks) for rows
    ``offset`` .. ``offset + limit``, PNGs as data URLs."""
    from ..lang.binder import bind
    from ..lang.parser import parse
    from ..render.cards import build_gallery

    end = min(offset + limit, table.num_rows)
    if end > MAX_CARD_ROWS:
        return {"term": None, "cards": [],
                "note": f"pictures of grouped rows are drawn for the first {MAX_CARD_ROWS} rows"}
    stmt = parse(sql)
    if not isinstance(stmt, ast.Select):
        return {"term": None, "cards": [], "note": "no pictures for this statement"}
    gallery = build_gallery(db, bind(stmt, sql, db.columns()), table, limit=end, size=size)
    return {"term": gallery.term, "note": gallery.note,
            "cards": [{"thumbs": [{"src": "data:image/png;base64," +
                                   base64.b64encode(t.png).decode(), "title": t.title,
                                   "mask_id": t.mask_id} for t in card.thumbs],
                       "metadata": [list(m) for m in card.metadata]}
                      for card in gallery.cards[offset:end]]}
