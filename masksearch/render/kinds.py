"""How a mask is drawn: as a float map (colormap), a label map (class palette) or a binary
mask (tinted area), decided from its dtype, its values and its ``mask_type``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["float", "label", "binary"]

LABEL_WORDS = ("label", "class", "segment", "semantic", "instance", "panoptic")
BINARY_WORDS = ("binary", "bool", "boolean")
FLOAT_WORDS = ("saliency", "attention", "heat", "prob", "depth", "score", "cam")
MAX_LABELS = 32            # integer masks with at most this many values are label maps


@dataclass(frozen=True)
class Style:
    """The drawing rule of one mask: its kind and, for float maps, the value span the
    colormap covers (``lo`` darkest, ``hi`` brightest)."""

    kind: Kind
    lo: float = 0.0
    hi: float = 1.0


def _says(mask_type: object, words: tuple[str, ...]) -> bool:
    return isinstance(mask_type, str) and any(w in mask_type.lower() for w in words)


def _float_span(pixels: np.ndarray) -> tuple[float, float]:
    """[0, 1] for maps within it (saliency, probabilities), else the finite values' span."""
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if pixels.dtype == np.uint8 and lo >= 0:
        return 0.0, 255.0
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return lo, lo + 1.0
    return lo, hi


def style_of(pixels: np.ndarray, mask_type: object = None) -> Style:
    """The drawing rule for these pixels: bool (or ``mask_type`` naming binary) as binary;
    integers with a label-like ``mask_type``, or with at most ``MAX_LABELS`` values that are
    not just {0, m}, as label maps; integers {0, m} as binary; everything else as a float
    map."""
    if pixels.dtype.kind == "b" or _says(mask_type, BINARY_WORDS):
        return Style("binary")
    if pixels.dtype.kind in "iu" and not _says(mask_type, FLOAT_WORDS):
        if _says(mask_type, LABEL_WORDS):
            return Style("label")
        values = np.unique(pixels) if pixels.size <= 1 << 22 else np.unique(pixels[::7, ::7])
        if len(values) <= 2 and values[0] == 0:
            return Style("binary")
        if len(values) <= MAX_LABELS:
            return Style("label")
    lo, hi = _float_span(pixels)
    return Style("float", lo, hi)
