// The detail view of one mask: its picture at full size with zoom, the ROI and range of the
// query's CP term highlighted, every metadata value and the row's values.

import { el, clear, show } from "./dom.js";
import { maskInfo, pictureUrl } from "./api.js";

const ZOOMS = [0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16];

function fill(table, names, values) {
  clear(table);
  names.forEach((name, i) => table.append(el("tr", {}, el("th", { text: name }),
    el("td", { text: show(values[i]) }))));
}

export class Detail {
  constructor(dialog) {
    this.dialog = dialog;
    this.img = dialog.querySelector("#detail-img");
    this.zoom = 1;
    dialog.querySelector("#detail-close").addEventListener("click", () => dialog.close());
    dialog.querySelector("#zoom-in").addEventListener("click", () => this.step(1));
    dialog.querySelector("#zoom-out").addEventListener("click", () => this.step(-1));
    dialog.querySelector("#zoom-fit").addEventListener("click", () => this.fit());
    dialog.querySelector(".detail-picture").addEventListener("wheel", (e) => {
      e.preventDefault();
      this.step(e.deltaY < 0 ? 1 : -1);
    }, { passive: false });
    this.img.addEventListener("load", () => this.fit());
  }

  step(direction) {
    const i = ZOOMS.findIndex((z) => z >= this.zoom - 1e-9);
    const next = ZOOMS[Math.max(0, Math.min(ZOOMS.length - 1, (i < 0 ? 2 : i) + direction))];
    this.setZoom(next);
  }

  fit() {
    const box = this.dialog.querySelector(".detail-picture");
    const w = this.img.naturalWidth || 1;
    const h = this.img.naturalHeight || 1;
    const z = Math.min((box.clientWidth - 8) / w, (box.clientHeight - 8) / h);
    this.setZoom(Math.max(0.25, Math.min(16, z)));
  }

  setZoom(z) {
    this.zoom = z;
    this.img.style.width = `${Math.round((this.img.naturalWidth || 0) * z)}px`;
    this.dialog.querySelector("#zoom-level").textContent = `${Math.round(z * 100)}%`;
  }

  async open(maskId, page, row) {
    const d = this.dialog;
    d.querySelector("#detail-title").textContent = `mask ${maskId}`;
    d.setAttribute("data-mask-id", maskId);
    this.img.setAttribute("alt", `mask ${maskId}`);
    this.img.removeAttribute("src");
    fill(d.querySelector("#detail-values"), page.columns, row);
    const meta = d.querySelector("#detail-meta");
    const source = clear(d.querySelector("#detail-source"));
    clear(meta);
    if (!d.open) d.showModal();
    try {
      const info = await maskInfo(maskId);
      const side = Math.max(info.values[info.columns.indexOf("height")] || 0,
        info.values[info.columns.indexOf("width")] || 0);
      // Small masks are drawn larger (nearest neighbour) so outlines and the legend read well.
      this.img.setAttribute("src", pictureUrl(maskId, page.picture, Math.min(4096, Math.max(640, side))));
      fill(meta, info.columns, info.values);
      const at = info.columns.indexOf("image_path");
      if (at >= 0 && info.values[at] !== null) {
        source.append(el("a", { href: `/api/masks/${encodeURIComponent(maskId)}/image`,
          target: "_blank", rel: "noopener", text: "open the source image" }));
      }
    } catch (e) {
      meta.append(el("tr", {}, el("td", { class: "error", text: e.message })));
    }
  }
}
