"""The perceptual colormap of float masks: a 256-entry RGB lookup table interpolated from a
few anchor colours (dark violet through blue and green to yellow, lightness rising
monotonically), so that brighter always means a larger value, also in grey print."""

from __future__ import annotations

import numpy as np

# (position in [0, 1], R, G, B): hand-picked anchors of rising lightness.
_ANCHORS = np.array([
    (0.000, 68, 1, 84),
    (0.125, 71, 40, 120),
    (0.250, 62, 74, 137),
    (0.375, 49, 104, 142),
    (0.500, 38, 130, 142),
    (0.625, 31, 158, 137),
    (0.750, 53, 183, 121),
    (0.875, 144, 215, 67),
    (1.000, 253, 231, 37),
], dtype=np.float64)


def _table() -> np.ndarray:
    """(256, 3) uint8: the anchors interpolated linearly in RGB."""
    t = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(t, _ANCHORS[:, 0], _ANCHORS[:, k]) for k in (1, 2, 3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


LUT = _table()
NAN_COLOUR = np.array((128, 128, 128), np.uint8)   # pixels without a value


def colour_indices(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Each value's entry in ``LUT`` (uint8): ``lo`` maps to 0, ``hi`` to 255, linearly,
    values outside clipped; NaN gives 0 (the caller paints NaN with ``NAN_COLOUR``)."""
    v = values.astype(np.float32, copy=False)
    span = hi - lo if hi > lo else 1.0
    t = (v - np.float32(lo)) * np.float32(255.0 / span)
    np.nan_to_num(t, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(t, 0.0, 255.0, out=t)
    return (t + np.float32(0.5)).astype(np.uint8)


def colourize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H, W, 3) uint8 colours of a float map over [lo, hi]; NaN pixels grey."""
    rgb = LUT[colour_indices(values, lo, hi)]
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        if nan.any():
            rgb[nan] = NAN_COLOUR
    return rgb
