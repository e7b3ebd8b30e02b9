"""The picture of one mask: its colours over the source image (or alone), the ROI's frame,
and the outline of the pixels the CP term counts. The rules, in order of painting:

1. base: the source image when known, else a dark grey;
2. the mask: float maps in the colormap (over an image blended with weight 0.25 + 0.45 t,
   t the value's place in the colormap's span; alone, opaque), label maps in the class
   palette (class 0 left as the base; over an image with weight 0.55), binary masks as a
   tinted area (weight 0.5 over an image, 0.8 alone);
3. the ROI's frame: the picture pixels of the region that touch its edge, in ``ROI_COLOUR``
   (not drawn for the full mask);
4. the outline, in ``OUTLINE_COLOUR``: the boundary (see ``outline.boundary``) of the
   counted pixels as sampled onto the picture. At native size and integer upscales the
   outlined pixels enclose exactly the pixels in the range and the region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..ranges import Cut
from .colormap import colour_indices, colourize
from .kinds import Style
from .outline import boundary, box_region, sample, sample_grid
from .palette import TINT, class_colours
from .selection import Box, clip_box, selected

OUTLINE_COLOUR = (255, 0, 96)
ROI_COLOUR = (255, 255, 255)
BASE_COLOUR = (40, 40, 40)
Size = int | tuple[int, int] | Sequence[int] | None


@dataclass(frozen=True)
class Picture:
    """A drawn mask: ``rgb`` (out_h, out_w, 3) uint8 and what was drawn on it: ``counted``
    (H, W) the pixels in the range and the region, ``outline`` and ``frame`` (out_h, out_w)
    the outline and ROI pixels painted, ``count`` the number CP gives."""

    rgb: np.ndarray
    counted: np.ndarray
    outline: np.ndarray
    frame: np.ndarray
    count: int | None


def picture_size(height: int, width: int, size: Size) -> tuple[int, int]:
    """(out_h, out_w): native for None, the longest side ``size`` for an int (the aspect
    kept), exactly (w, h) for a pair."""
    if size is None:
        return height, width
    if isinstance(size, (int, np.integer)):
        n = int(size)
        if n < 1:
            raise ValueError(f"size must be a positive number of pixels, not {n}")
        scale = n / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    w, h = (int(v) for v in size)
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive (w, h), not ({w}, {h})")
    return h, w


def _mask_layer(pixels: np.ndarray, style: Style, over_image: bool) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(colours (H, W, 3) uint8, weights (H, W) float32) of the mask's own layer."""
    if style.kind == "float":
        rgb = colourize(pixels, style.lo, style.hi)
        if not over_image:
            return rgb, np.ones(pixels.shape, np.float32)
        t = colour_indices(pixels, style.lo, style.hi).astype(np.float32) / 255.0
        return rgb, np.float32(0.25) + np.float32(0.45) * t
    on = pixels != 0
    if pixels.dtype.kind == "f":
        on &= ~np.isnan(pixels)
    if style.kind == "label":
        rgb = class_colours(pixels)
        return rgb, on.astype(np.float32) * np.float32(0.55 if over_image else 1.0)
    rgb = np.broadcast_to(TINT, (*pixels.shape, 3))
    return rgb, on.astype(np.float32) * np.float32(0.5 if over_image else 0.8)


def _blend(base: np.ndarray, colours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = weights[..., None]
    out = base.astype(np.float32) * (1 - w) + colours.astype(np.float32) * w
    return (out + 0.5).astype(np.uint8)


def draw(pixels: np.ndarray, style: Style, *, box: Box | None, cuts: tuple[Cut, Cut] | None,
         size: Size = None, image: np.ndarray | None = None, frame: bool = True) -> Picture:
    """The picture of ``pixels`` (H, W) at ``size``; ``box`` the region (None: no region
    drawn and nothing counted), ``cuts`` the range (None: nothing counted), ``image`` the
    source image at the picture's size (out_h, out_w, 3) uint8 or None. ``frame=False``
    leaves the ROI's frame out (the full mask's is never drawn)."""
    height, width = pixels.shape
    out_h, out_w = picture_size(height, width, size)
    rows, cols = sample_grid(height, width, out_h, out_w)
    if out_h * out_w < height * width:      # smaller: colour only the sampled pixels
        colours, weights = _mask_layer(sample(pixels, rows, cols), style, image is not None)
    else:
        colours, weights = _mask_layer(pixels, style, image is not None)
        colours, weights = sample(colours, rows, cols), sample(weights, rows, cols)
    base = image if image is not None else np.broadcast_to(
        np.array(BASE_COLOUR, np.uint8), (out_h, out_w, 3))
    rgb = _blend(base, colours, weights)
    clipped = None if box is None else clip_box(box, height, width)
    roi_edge = np.zeros((out_h, out_w), bool)
    if frame and clipped is not None and clipped != (0, 0, width, height):
        roi_edge = boundary(box_region(clipped, rows, cols))
        rgb[roi_edge] = ROI_COLOUR
    counted = selected(pixels, clipped, cuts)
    edge = boundary(sample(counted, rows, cols))
    rgb[edge] = OUTLINE_COLOUR
    count = None if clipped is None or cuts is None else int(counted.sum())
    return Picture(rgb, counted, edge, roi_edge, count)
