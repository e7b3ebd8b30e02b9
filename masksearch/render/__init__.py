"""Masks as pictures: the overlay of one mask (colormap, class palette or tint over its
source image; the ROI framed; the counted pixels outlined), and results as HTML cards,
self-contained HTML files and contact sheets.

Modules: ``colormap`` and ``palette`` (colours), ``kinds`` (which rule draws a mask),
``selection`` (the counted pixels), ``outline`` (sampling and outlines), ``overlay`` (the
picture), ``legend``, ``picture`` (picture + legend), ``images`` (source images confined to
the image root), ``stored`` (stored masks, the PNG cache)."""

from __future__ import annotations

from .images import resolve_image
from .overlay import OUTLINE_COLOUR, ROI_COLOUR, Picture, draw, picture_size
from .picture import Request, compose

__all__ = ["OUTLINE_COLOUR", "ROI_COLOUR", "Picture", "Request", "compose", "draw",
           "picture_size", "resolve_image"]
