// Results: a grid of cards (a lazily loaded picture of each row's mask and its values) or a
// table. Cards carry data-mask-id; rows without a mask_id (grouped queries) get no picture.

import { el, clear, show } from "./dom.js";
import { pictureUrl } from "./api.js";

export const THUMB = 192;

function caption(page, row) {
  const items = page.columns.map((name, i) =>
    el("div", { class: "kv-row" }, el("dt", { text: name }), el("dd", { text: show(row[i]) })));
  return el("figcaption", {}, el("dl", {}, items));
}

function card(page, row, onOpen) {
  const idAt = page.columns.indexOf("mask_id");
  const maskId = idAt >= 0 ? row[idAt] : null;
  const attrs = { class: "card", tabindex: 0 };
  if (maskId !== null) attrs["data-mask-id"] = maskId;
  const imageAt = page.columns.indexOf("image_id");
  if (imageAt >= 0) attrs["data-image-id"] = show(row[imageAt]);
  const node = el("figure", attrs);
  if (maskId !== null) {
    node.append(el("img", { src: pictureUrl(maskId, page.picture, THUMB), loading: "lazy",
      alt: `mask ${maskId}`, width: THUMB, height: THUMB, class: "thumb" }));
  }
  node.append(caption(page, row));
  if (maskId !== null) {
    node.addEventListener("click", () => onOpen(maskId, page, row));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") onOpen(maskId, page, row); });
  }
  return node;
}

export function drawCards(container, page, onOpen) {
  clear(container);
  container.append(...page.rows.map((row) => card(page, row, onOpen)));
}

// Pictures of grouped rows (the renderer's: first members, aggregated masks) added to the
// cards drawn without them; a member opens the detail view of its mask.
export function addGroupPictures(container, page, cards, onOpen) {
  const nodes = container.querySelectorAll(".card");
  cards.forEach((c, i) => {
    const node = nodes[i];
    if (!node || !c.thumbs.length) return;
    const strip = el("div", { class: "thumbs" });
    for (const t of c.thumbs) {
      const fig = el("figure", { class: "member" },
        el("img", { src: t.src, alt: t.title, title: t.title, class: "thumb" }),
        el("figcaption", { text: t.title }));
      if (t.mask_id !== null) {
        fig.setAttribute("data-member-id", t.mask_id);
        fig.addEventListener("click", (e) => {
          e.stopPropagation();
          onOpen(t.mask_id, page, page.rows[i]);
        });
      }
      strip.append(fig);
    }
    node.prepend(strip);
    const extra = c.metadata.map(([k, v]) =>
      el("div", { class: "kv-row" }, el("dt", { text: k }), el("dd", { text: v })));
    node.querySelector("dl").append(...extra);
  });
}

export function drawTable(container, page, onOpen) {
  clear(container);
  const head = el("tr", {}, page.columns.map((c) => el("th", { text: c })));
  const idAt = page.columns.indexOf("mask_id");
  const body = page.rows.map((row) => {
    const tr = el("tr", idAt >= 0 ? { "data-mask-id": row[idAt] } : {},
      row.map((v) => el("td", { text: show(v) })));
    if (idAt >= 0) tr.addEventListener("click", () => onOpen(row[idAt], page, row));
    return tr;
  });
  container.append(el("table", { class: "rows" }, el("thead", {}, head), el("tbody", {}, body)));
}
