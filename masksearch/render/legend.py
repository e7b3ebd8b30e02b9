"""The legend strip drawn under a picture: for float maps a colour bar of the colormap's
span with its ends written and the range's part of it marked; for label maps the colours
of the classes present; for binary masks the tint. A second line gives the region, the
range and the number of pixels counted."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..ranges import Cut
from .colormap import LUT
from .kinds import Style
from .overlay import OUTLINE_COLOUR
from .palette import TINT, class_colour

LEGEND_HEIGHT = 30
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MAX_SWATCHES = 12


@dataclass(frozen=True)
class LegendText:
    """What the legend's second line says: the range as written, the region's name and the
    count (None when nothing is counted)."""

    range_text: str | None = None
    roi_text: str | None = None
    count: int | None = None


@lru_cache(maxsize=1)
def legend_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=10)


def _number(v: float) -> str:
    return f"{v:.4g}"


def _range_span(cuts: tuple[Cut, Cut], style: Style, width: int) -> tuple[int, int]:
    """The colour bar's columns [a, b) that the range covers."""
    span = style.hi - style.lo or 1.0

    def column(t: float) -> int:
        return int(np.clip((t - style.lo) / span, 0.0, 1.0) * width)

    return column(cuts[0].t), max(column(cuts[1].t), column(cuts[0].t) + 1)


def _float_bar(draw: ImageDraw.ImageDraw, style: Style, width: int,
               cuts: tuple[Cut, Cut] | None) -> None:
    if cuts is not None:
        a, b = _range_span(cuts, style, max(width - 4, 1))
        draw.line([(2 + a, 9), (2 + b - 1, 9)], fill=OUTLINE_COLOUR, width=2)
    font = legend_font()
    draw.text((2, 10), _number(style.lo), fill=INK, font=font)
    hi = _number(style.hi)
    draw.text((width - 2 - draw.textlength(hi, font=font), 10), hi, fill=INK, font=font)


def _swatches(draw: ImageDraw.ImageDraw, labels: list[int], width: int) -> None:
    x = 2
    font = legend_font()
    for label in labels[:MAX_SWATCHES]:
        text = str(label)
        step = 10 + int(draw.textlength(text, font=font)) + 4
        if x + step > width:
            break
        draw.rectangle([x, 4, x + 7, 11], fill=class_colour(label))
        draw.text((x + 9, 2), text, fill=INK, font=font)
        x += step


def _second_line(text: LegendText) -> str:
    if text.range_text is None or text.count is None:
        return f"region {text.roi_text}" if text.roi_text else ""
    where = f" in {text.roi_text}" if text.roi_text else ""
    return f"{text.count:,} px {text.range_text}{where}"


def legend_strip(style: Style, width: int, text: LegendText,
                 cuts: tuple[Cut, Cut] | None = None,
                 labels: list[int] | None = None) -> np.ndarray:
    """(LEGEND_HEIGHT, width, 3) uint8: the legend of a picture ``width`` pixels wide."""
    strip = np.full((LEGEND_HEIGHT, width, 3), BACKGROUND, np.uint8)
    if style.kind == "float" and width > 4:
        strip[2:8, 2:width - 2] = LUT[np.linspace(0, 255, width - 4).astype(np.int64)]
    img = Image.fromarray(strip)
    draw = ImageDraw.Draw(img)
    if style.kind == "float":
        _float_bar(draw, style, width, cuts)
    elif style.kind == "label":
        _swatches(draw, labels or [], width)
    else:
        draw.rectangle([2, 4, 9, 11], fill=tuple(int(c) for c in TINT))
        draw.text((12, 2), "mask", fill=INK, font=legend_font())
    draw.text((2, LEGEND_HEIGHT - 11), _second_line(text), fill=INK, font=legend_font())
    return np.asarray(img)
