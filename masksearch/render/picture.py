"""One mask's finished picture: the overlay (``overlay.draw``) with its legend under it, as
a PIL image; the entry point for masks that are not stored (aggregated masks, tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..ranges import Cut
from .kinds import style_of
from .legend import LegendText, legend_strip
from .overlay import Picture, Size, draw
from .selection import Box


@dataclass(frozen=True)
class Request:
    """What to draw over a mask: the region (a box or None), its name for the legend, the
    range's cuts and text, the size, the legend and the ROI frame."""

    box: Box | None = None
    roi_text: str | None = None
    cuts: tuple[Cut, Cut] | None = None
    range_text: str | None = None
    size: Size = None
    legend: bool = True
    frame: bool = True


def labels_present(pixels: np.ndarray) -> list[int]:
    """The non-zero classes of a label map, in order (for the legend's swatches)."""
    values = np.unique(pixels if pixels.size <= 1 << 20 else pixels[::3, ::3])
    return [int(v) for v in values if v != 0][:64]


def compose(pixels: np.ndarray, request: Request, *, mask_type: object = None,
            image: np.ndarray | None = None) -> tuple[Image.Image, Picture]:
    """The RGB picture of ``pixels`` (with the legend strip under it when asked) and what
    was drawn; ``image`` is the source image at the picture's size, or None."""
    style = style_of(pixels, mask_type)
    pic = draw(pixels, style, box=request.box, cuts=request.cuts, size=request.size,
               image=image, frame=request.frame)
    rgb = pic.rgb
    if request.legend:
        text = LegendText(request.range_text, request.roi_text, pic.count)
        labels = labels_present(pixels) if style.kind == "label" else None
        strip = legend_strip(style, rgb.shape[1], text, request.cuts, labels)
        rgb = np.concatenate([rgb, strip], axis=0)
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB"), pic
