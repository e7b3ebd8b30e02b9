"""A contact sheet: the cards' pictures in one PNG, a tile per row of the result (a
group's members and aggregated masks side by side in its tile), each captioned with its
first values."""

from __future__ import annotations

import io
import os

from PIL import Image, ImageDraw

from .cards import Card, Gallery
from .legend import legend_font

PAD = 6
CAPTION = 14
TITLE = 12
BACKGROUND = (246, 246, 246)
INK = (20, 20, 20)


def _tile(card: Card) -> Image.Image | None:
    """A card's pictures side by side, each with its title under it (only when there are
    several: a group's members and aggregated masks)."""
    pics = [Image.open(io.BytesIO(t.png)).convert("RGB") for t in card.thumbs]
    if not pics:
        return None
    titled = len(pics) > 1
    width = sum(p.width for p in pics) + 2 * (len(pics) - 1)
    height = max(p.height for p in pics) + (TITLE if titled else 0)
    tile = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(tile)
    x = 0
    for p, thumb in zip(pics, card.thumbs, strict=True):
        tile.paste(p, (x, 0))
        if titled:
            draw.text((x, p.height), thumb.title, fill=INK, font=legend_font())
        x += p.width + 2
    return tile


def _caption(card: Card, width: int) -> str:
    text = "  ".join(f"{k}={v}" for k, v in card.fields[:3])
    limit = max(4, width // 6)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def contact_sheet_image(gallery: Gallery, columns: int) -> Image.Image:
    """The sheet: tiles in rows of ``columns``, each with a caption line under it."""
    tiles = [(c, t) for c in gallery.cards if (t := _tile(c)) is not None]
    if not tiles:
        return Image.new("RGB", (200, 40), BACKGROUND)
    cols = max(1, min(columns, len(tiles)))
    cell_w = max(t.width for _, t in tiles) + PAD
    cell_h = max(t.height for _, t in tiles) + CAPTION + PAD
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell_w + PAD, rows * cell_h + PAD), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for k, (card, tile) in enumerate(tiles):
        x, y = PAD + (k % cols) * cell_w, PAD + (k // cols) * cell_h
        sheet.paste(tile, (x, y))
        draw.text((x, y + tile.height + 1), _caption(card, cell_w - PAD), fill=INK,
                  font=legend_font())
    return sheet


def save_contact_sheet(gallery: Gallery, path: str | os.PathLike[str], columns: int) -> None:
    contact_sheet_image(gallery, columns).save(path, format="PNG")
