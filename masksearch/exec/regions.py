"""Regions of interest per row: boxes clipped to each mask, their areas, and NULL boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..lang import ast
from .arrays import Ints


@dataclass(frozen=True)
class Regions:
    """Clipped boxes (N, 4) as x0, y0, x1, y1 with x0 <= x1, y0 <= y1; ``null`` where NULL."""

    boxes: np.ndarray
    null: np.ndarray

    @property
    def area(self) -> np.ndarray:
        return box_areas(self.boxes)

    def take(self, idx: np.ndarray) -> Regions:
        return Regions(self.boxes[idx], self.null[idx])


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Pixels of each clipped (N, 4) box."""
    widths: Ints = boxes[:, 2] - boxes[:, 0]
    heights: Ints = boxes[:, 3] - boxes[:, 1]
    return widths * heights


def clip_boxes(raw: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Clip (N, 4) boxes to each mask; boxes that miss the mask become empty."""
    x0 = np.clip(raw[:, 0], 0, widths)
    x1 = np.clip(raw[:, 2], 0, widths)
    y0 = np.clip(raw[:, 1], 0, heights)
    y1 = np.clip(raw[:, 3], 0, heights)
    x1 = np.maximum(x1, x0)
    y1 = np.maximum(y1, y0)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def regions(roi: ast.Roi, rows: pa.Table) -> Regions:
    """The region ``roi`` covers in each row of ``rows`` (metadata with height and width)."""
    heights = rows.column("height").to_numpy(zero_copy_only=False).astype(np.int64)
    widths = rows.column("width").to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(heights)
    null = np.zeros(n, dtype=bool)
    if isinstance(roi, ast.FullRoi):
        raw = np.stack([np.zeros(n, np.int64), np.zeros(n, np.int64), widths, heights], axis=1)
    elif isinstance(roi, ast.BoxRoi):
        raw = np.tile(np.array([roi.x0, roi.y0, roi.x1, roi.y1], np.int64), (n, 1))
    else:
        col = rows.column(roi.name).combine_chunks()
        null = col.is_null().to_numpy(zero_copy_only=False).astype(bool)
        raw = np.stack([col.field(f).fill_null(0).to_numpy(zero_copy_only=False)
                        for f in ("x0", "y0", "x1", "y1")], axis=1).astype(np.int64)
        raw[null] = 0
    return Regions(clip_boxes(raw, heights, widths), null)
