"""Regions of interest per row: boxes clipped to each mask, their areas, and NULL boxes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from ..lang import ast
from ..store.arrow_compute import call, fill_null
from ..store.numpy_arrow import array_numpy, scalar
from .arrays import Ints


@dataclass(frozen=True)
class Regions:
    """Clipped boxes (N, 4) as x0, y0, x1, y1 with x0 <= x1, y0 <= y1; ``null`` where NULL;
    ``one_box``: known to be one box on every row (False: not known)."""

    boxes: np.ndarray
    null: np.ndarray
    one_box: bool = False

    @cached_property
    def area(self) -> np.ndarray:
        return box_areas(self.boxes)

    def take(self, idx: np.ndarray) -> Regions:
        return Regions(self.boxes.take(idx, axis=0), self.null.take(idx), self.one_box)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Pixels of each clipped (N, 4) box."""
    widths: Ints = boxes[:, 2] - boxes[:, 0]
    heights: Ints = boxes[:, 3] - boxes[:, 1]
    return widths * heights


def clip_boxes(raw: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Clip (N, 4) boxes to each mask; boxes that miss the mask become empty."""
    if len(raw) and heights.min() == heights.max() and widths.min() == widths.max():
        limits = np.array([widths[0], heights[0], widths[0], heights[0]], np.int64)
    else:
        limits = np.stack([widths, heights, widths, heights], axis=1)
    out: Ints = np.minimum(np.maximum(raw, 0), limits).astype(np.int64, copy=False)
    # Column by column: ufuncs over a strided half of the array are several times slower.
    for lo, hi in ((0, 2), (1, 3)):
        np.maximum(out[:, hi], out[:, lo], out=out[:, hi])
    return out


def _ints(rows: pa.Table, name: str) -> Ints:
    values: Ints = array_numpy(rows.column(name)).astype(np.int64, copy=False)
    return values


def regions(roi: ast.Roi, rows: pa.Table) -> Regions:
    """The region ``roi`` covers in each row of ``rows`` (metadata with height and width)."""
    heights, widths = _ints(rows, "height"), _ints(rows, "width")
    n = len(heights)
    null = np.zeros(n, dtype=bool)
    if isinstance(roi, (ast.FullRoi, ast.BoxRoi)) and n and \
            heights.min() == heights.max() and widths.min() == widths.max():
        # One box on masks of one size (the common case): clipped once, and every row's
        # box and NULL flag a read-only view of it (nothing written per row).
        return Regions(np.broadcast_to(_fixed_boxes(roi, heights[:1], widths[:1]), (n, 4)),
                       np.broadcast_to(False, n), one_box=True)
    if isinstance(roi, (ast.FullRoi, ast.BoxRoi)):
        return Regions(_fixed_boxes(roi, heights, widths), null)
    col = rows.column(roi.name).combine_chunks()
    if not col.null_count and not any(col.field(f).null_count for f in _CORNERS):
        raw = np.stack([array_numpy(col.field(f)) for f in _CORNERS], axis=1)
        return Regions(clip_boxes(raw.astype(np.int64, copy=False), heights, widths), null)
    null = array_numpy(call("is_null", col)).astype(bool)
    raw = np.stack([array_numpy(fill_null(col.field(f), scalar(0))) for f in _CORNERS],
                   axis=1).astype(np.int64)
    raw[null] = 0
    return Regions(clip_boxes(raw, heights, widths), null)


_CORNERS = ("x0", "y0", "x1", "y1")


def _fixed_boxes(roi: ast.FullRoi | ast.BoxRoi, heights: np.ndarray,
                 widths: np.ndarray) -> np.ndarray:
    """The clipped boxes of a full or fixed-box region on masks of these sizes."""
    n = len(heights)
    if isinstance(roi, ast.FullRoi):
        return np.stack([np.zeros(n, np.int64), np.zeros(n, np.int64), widths, heights],
                        axis=1)
    raw = np.tile(np.array([roi.x0, roi.y0, roi.x1, roi.y1], np.int64), (n, 1))
    return clip_boxes(raw, heights, widths)
