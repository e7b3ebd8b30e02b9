"""Cards as HTML: a gallery fragment for notebooks (Jupyter, VS Code) and a self-contained
paged document. No JavaScript; pictures are embedded PNGs; every value is escaped
(``html.escape(quote=True)``), in text and in attributes alike."""

from __future__ import annotations

import base64
import html

from .cards import Card, Gallery, Thumb

CSS = """
.ms-gallery{font:13px/1.35 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b}
.ms-gallery .ms-head{margin:4px 0 8px;color:#444}
.ms-gallery .ms-sql{white-space:pre-wrap;margin:0 0 4px}
.ms-gallery .ms-grid{display:flex;flex-wrap:wrap;gap:10px}
.ms-gallery .ms-card{border:1px solid #d0d0d0;border-radius:6px;padding:6px;margin:0;
  background:#fff;width:min-content;max-width:100%}
.ms-gallery .ms-pics{display:flex;gap:4px}
.ms-gallery .ms-pic{margin:0;text-align:center;font-size:11px;color:#555}
.ms-gallery .ms-pic img{display:block;image-rendering:pixelated}
.ms-gallery table{border-collapse:collapse;margin-top:4px;font-size:12px}
.ms-gallery th{text-align:left;font-weight:600;padding:0 6px 0 0;color:#333;vertical-align:top;
  white-space:nowrap}
.ms-gallery td{padding:0;overflow-wrap:anywhere}
.ms-gallery tr.ms-meta th,.ms-gallery tr.ms-meta td{color:#777;font-weight:400}
.ms-gallery .ms-more{margin-top:8px;color:#444}
"""

PAGE_CSS = """
body{margin:16px;background:#f6f6f6}
.ms-page{display:none}
.ms-page:first-of-type{display:block}
body:has(.ms-page:target) .ms-page{display:none}
body:has(.ms-page:target) .ms-page:target{display:block}
.ms-nav a{margin-right:6px}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _thumb(t: Thumb) -> str:
    data = base64.b64encode(t.png).decode("ascii")
    attr = "" if t.mask_id is None else f' data-mask-id="{esc(t.mask_id)}"'
    return (f'<figure class="ms-pic"{attr}><img src="data:image/png;base64,{data}" '
            f'alt="{esc(t.title)}"><figcaption>{esc(t.title)}</figcaption></figure>')


def card_html(card: Card) -> str:
    """One card: its pictures, then a table of the selected values and the metadata."""
    rows = [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in card.fields]
    rows += [f'<tr class="ms-meta"><th>{esc(k)}</th><td>{esc(v)}</td></tr>'
             for k, v in card.metadata]
    attr = "" if card.mask_id is None else f' data-mask-id="{esc(card.mask_id)}"'
    pics = "".join(_thumb(t) for t in card.thumbs)
    pics_html = f'<div class="ms-pics">{pics}</div>' if pics else ""
    return f'<div class="ms-card"{attr}>{pics_html}<table>{"".join(rows)}</table></div>'


def _head(gallery: Gallery) -> str:
    rows = gallery.total
    parts = [f"{rows:,} row{'s' if rows != 1 else ''}"]
    if gallery.term:
        parts.append(f"outlined: the pixels {gallery.term} counts")
    if gallery.note:
        parts.append(gallery.note)
    return f'<div class="ms-head">{esc("; ".join(parts))}</div>'


def more_line(total: int, shown: int) -> str:
    missing = total - shown
    if missing <= 0:
        return ""
    return (f'<div class="ms-more">{missing:,} more row{"s" if missing != 1 else ""} '
            "not shown</div>")


def gallery_html(gallery: Gallery) -> str:
    """The notebook fragment: style, head line, the cards, and how many rows are not
    shown."""
    cards = "".join(card_html(c) for c in gallery.cards)
    return (f'<div class="ms-gallery"><style>{CSS}</style>{_head(gallery)}'
            f'<div class="ms-grid">{cards}</div>'
            f"{more_line(gallery.total, len(gallery.cards))}</div>")


def _nav(pages: int) -> str:
    if pages <= 1:
        return ""
    links = "".join(f'<a href="#p{k + 1}">{k + 1}</a>' for k in range(pages))
    return f'<nav class="ms-nav">page {links}</nav>'


def document_html(gallery: Gallery, title: str, per_page: int) -> str:
    """A self-contained HTML document: the cards in pages of ``per_page`` (CSS paging by
    fragment links: ``#p2`` shows page 2), the query as its title."""
    pages = [gallery.cards[i:i + per_page] for i in range(0, len(gallery.cards), per_page)]
    pages = pages or [[]]
    nav = _nav(len(pages))
    sections = "".join(
        f'<section class="ms-page" id="p{k + 1}">{nav}<div class="ms-grid">'
        f'{"".join(card_html(c) for c in cards)}</div></section>'
        for k, cards in enumerate(pages))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{CSS}{PAGE_CSS}</style></head>"
            f'<body><div class="ms-gallery"><pre class="ms-sql">{esc(title)}</pre>'
            f"{_head(gallery)}{sections}{more_line(gallery.total, len(gallery.cards))}"
            "</div></body></html>\n")
