"""Sampling a mask onto the picture's pixels, and the outline of a set of pixels.

The picture has (out_h, out_w) pixels; picture pixel (i, j) shows mask pixel
(i * h // out_h, j * w // out_w) (nearest sampling: at native size and at integer upscales
every mask pixel becomes a whole block). The outline of a set is its pixels that touch,
side by side, a pixel outside it or the picture's edge: drawn on top of the set's own
pixels, it encloses exactly the set, and nothing outside it is ever painted."""

from __future__ import annotations

import numpy as np


def sample_grid(height: int, width: int, out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the mask row of each picture row and the mask column of each picture
    column."""
    rows = (np.arange(out_h, dtype=np.int64) * height) // out_h
    cols = (np.arange(out_w, dtype=np.int64) * width) // out_w
    return rows, cols


def sample(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``values`` (H, W, ...) sampled onto the picture's pixels."""
    return values[rows[:, None], cols[None, :]]


def boundary(region: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of ``region`` with a 4-neighbour outside it or off the
    picture."""
    inner = np.zeros_like(region)
    inner[1:-1, 1:-1] = (region[1:-1, 1:-1] & region[:-2, 1:-1] & region[2:, 1:-1]
                         & region[1:-1, :-2] & region[1:-1, 2:])
    return region & ~inner


def box_region(box: tuple[int, int, int, int], rows: np.ndarray,
               cols: np.ndarray) -> np.ndarray:
    """(out_h, out_w) bool: the picture pixels that show a mask pixel inside ``box``
    (clipped; x1, y1 excluded)."""
    x0, y0, x1, y1 = box
    in_rows = (rows >= y0) & (rows < y1)
    in_cols = (cols >= x0) & (cols < x1)
    return in_rows[:, None] & in_cols[None, :]
