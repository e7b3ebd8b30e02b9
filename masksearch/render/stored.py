"""Rendering stored masks: a mask's pixels and metadata row, its region (a box or a box
column of its row), its source image under the database's image root, and a cache of
encoded PNGs. ``Database.render``/``render_png``/``image_root`` are thin calls into
``Renderer``."""

from __future__ import annotations

import io
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import MaskSearchError, StoreError
from ..store.settings import image_root_value, read_settings, write_setting
from ..store.snapshot import Snapshot
from ..store.store import Store
from .images import locate_image, read_image
from .overlay import picture_size
from .picture import Request, compose
from .selection import Box, RangeArg, range_cuts_of

RoiArg = str | tuple[int, int, int, int] | Sequence[int] | None
CACHE_BYTES = 64 << 20


def box_value(value: object) -> Box | None:
    """A box from a metadata value (a struct as a dict, or a sequence), or None."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value.get(k) for k in ("x0", "y0", "x1", "y1")]
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 4:
        return None
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in value):
        return None
    x0, y0, x1, y1 = (int(v) for v in value)
    return x0, y0, x1, y1


def region_of(roi: RoiArg, row: dict[str, Any], columns: dict[str, str],
              shape: tuple[int, int]) -> tuple[Box | None, str | None]:
    """(box, its name for the legend) of a render ROI: None, a box tuple, ``'full'`` or the
    name of a box column of the mask's row (a NULL box gives no region)."""
    height, width = shape
    if roi is None:
        return None, None
    if isinstance(roi, str):
        if roi.lower() == "full":
            return (0, 0, width, height), "full"
        if columns.get(roi) != "box":
            raise MaskSearchError(f"ROI {roi!r} is not a box column (box columns: "
                                  f"{', '.join(n for n, t in columns.items() if t == 'box')})")
        return box_value(row.get(roi)), roi
    box = box_value(tuple(roi))
    if box is None:
        raise MaskSearchError(f"a ROI is a box column's name, 'full' or (x0, y0, x1, y1), "
                              f"not {roi!r}")
    return box, "box({}, {}, {}, {})".format(*box)


def range_text_of(value: RangeArg) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return " ".join(value.split())
    lo, hi = (float(v) for v in value)
    return f"({lo:g}, {hi:g}]"


def _hashable(value: object) -> object:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return tuple(_hashable(v) for v in value)  # type: ignore[attr-defined]


class Renderer:
    """Pictures of the masks of one store, with the image root from its settings file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._png: OrderedDict[tuple, bytes] = OrderedDict()
        self._png_bytes = 0
        self._snapshot: object = None
        self._lock = threading.Lock()

    # --- the image root -------------------------------------------------------------------
    @property
    def image_root(self) -> str | None:
        value = read_settings(self.store.files).get("image_root")
        return value if isinstance(value, str) else None

    def set_image_root(self, folder: str | os.PathLike[str] | None) -> None:
        self.store.refuse_remote_writes()
        if self.store.read_only:
            raise StoreError(f"the database at {self.store.root} is open read-only: this "
                             "connection cannot change its settings")
        write_setting(self.store.root, "image_root", image_root_value(self.store.root, folder))

    # --- pictures -------------------------------------------------------------------------
    def _locate(self, mask_id: int) -> tuple[Snapshot, int, int, dict[str, Any]]:
        """The snapshot, segment position, row and metadata row of a mask."""
        self.store.refresh()
        snapshot = self.store.snapshot()
        where = snapshot.locate_many([int(mask_id)])
        seg, row = int(where.segment[0]), int(where.row[0])
        position = int(snapshot.positions([int(mask_id)])[0])
        record = snapshot.table.slice(position, 1).to_pylist()[0]
        return snapshot, seg, row, record

    def request(self, pixels: np.ndarray, record: dict[str, Any], columns: dict[str, str],
                roi: RoiArg, range: RangeArg, size: object, legend: bool) -> Request:
        cuts = range_cuts_of(range)
        box, roi_text = region_of(roi, record, columns, pixels.shape)
        if box is None and roi is None and cuts is not None:
            box, roi_text = (0, 0, pixels.shape[1], pixels.shape[0]), "full"
        return Request(box, roi_text, cuts, range_text_of(range), size,  # type: ignore[arg-type]
                       legend)

    def source(self, record: dict[str, Any], confined: bool) -> Path | None:
        """The source image file of a mask's metadata row, or None."""
        return locate_image(self.image_root, record.get("image_path"), confined)

    def render(self, mask_id: int, roi: RoiArg = None, range: RangeArg = None,
               size: object = None, *, legend: bool = True,
               confined: bool = False) -> Image.Image:
        snapshot, seg, row, record = self._locate(mask_id)
        return self.render_pixels(snapshot.segments[seg].pixels(row), record,
                                  snapshot.columns, roi, range, size, legend=legend,
                                  source=self.source(record, confined))

    def render_pixels(self, pixels: np.ndarray, record: dict[str, Any],
                      columns: dict[str, str], roi: RoiArg = None, range: RangeArg = None,
                      size: object = None, *, legend: bool = True,
                      source: Path | None = None) -> Image.Image:
        """The picture of ``pixels`` (a stored mask's, or a group's aggregated mask) with
        the metadata ``record`` giving its box columns and ``mask_type``, over the image
        file ``source`` (see ``source``) if any."""
        request = self.request(pixels, record, columns, roi, range, size, legend)
        out_h, out_w = picture_size(pixels.shape[0], pixels.shape[1], request.size)
        image = read_image(source, out_w, out_h)
        return compose(pixels, request, mask_type=record.get("mask_type"), image=image)[0]

    def records(self, mask_ids: list[int]) -> dict[int, dict[str, Any]]:
        """The metadata rows of these masks (every column), by mask id."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.store.refresh()
        table = self.store.snapshot().table
        rows = table.filter(pc.is_in(table.column("mask_id"), value_set=pa.array(
            mask_ids, pa.int64()))).drop_columns(["_seg", "_row"])
        return {int(r["mask_id"]): r for r in rows.to_pylist()}

    def _cached(self, snapshot: Snapshot, key: tuple) -> bytes | None:
        with self._lock:
            if self._snapshot is not snapshot:      # a commit: every picture may change
                self._png.clear()
                self._png_bytes = 0
                self._snapshot = snapshot
            data = self._png.get(key)
            if data is not None:
                self._png.move_to_end(key)
            return data

    def _keep(self, key: tuple, data: bytes) -> None:
        with self._lock:
            self._png[key] = data
            self._png_bytes += len(data)
            while self._png_bytes > CACHE_BYTES and len(self._png) > 1:
                _, old = self._png.popitem(last=False)
                self._png_bytes -= len(old)

    def render_png(self, mask_id: int, roi: RoiArg = None, range: RangeArg = None,
                   size: object = None, *, legend: bool = True,
                   confined: bool = False) -> bytes:
        """``render`` as PNG bytes, cached by the database's snapshot, the arguments and
        the source image file (its path, size and modification time)."""
        snapshot, seg, row, record = self._locate(mask_id)
        path = self.source(record, confined)
        stamp = None
        if path is not None:
            try:
                st = path.stat()
                stamp = (str(path), st.st_size, st.st_mtime_ns)
            except OSError:         # removed since it was found: drawn without it
                path = None
        key = (int(mask_id), _hashable(roi), _hashable(range), _hashable(size), legend, stamp)
        data = self._cached(snapshot, key)
        if data is None:
            data = encode_png(self.render_pixels(
                snapshot.segments[seg].pixels(row), record, snapshot.columns, roi, range, size,
                legend=legend, source=path))
            self._keep(key, data)
        return data


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes of a picture (fast compression: thumbnails are small)."""
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()
