"""The fixed class palette of label maps: class 0 is background (left uncoloured), classes
1, 2, ... take these colours in turn (class c gets entry (c - 1) mod 20), so a class has the
same colour in every picture."""

from __future__ import annotations

import numpy as np

# Twenty distinct, saturated colours; none is the outline or the ROI colour.
PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (165, 163, 255),
], dtype=np.uint8)

TINT = np.array((30, 144, 255), np.uint8)     # binary masks: the masked area


def class_colours(labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: each pixel's class colour (class 0 gets entry 19, unused by
    callers, which leave background uncoloured)."""
    idx = (labels.astype(np.int64) - 1) % len(PALETTE)
    return PALETTE[idx]


def class_colour(label: int) -> tuple[int, int, int]:
    r, g, b = PALETTE[(int(label) - 1) % len(PALETTE)]
    return int(r), int(g), int(b)
