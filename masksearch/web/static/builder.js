// The query builder: a form whose choices are written into the editor as SQL, and a
// sample mask to draw the region on.

import { el } from "./dom.js";
import { pictureUrl } from "./api.js";

function roiText(form) {
  const roi = form.roi.value;
  if (roi === "full") return "full";
  if (roi === "__box" || roi === "__drawn") {
    const n = (name) => Math.max(0, Math.round(Number(form[name].value) || 0));
    return `box(${n("x0")}, ${n("y0")}, ${n("x1")}, ${n("y1")})`;
  }
  return roi;
}

function number(text, name) {
  const value = String(text).trim();
  if (!/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(value)) {
    throw new Error(`${name} must be a number, got "${value}"`);
  }
  return value;
}

// The SQL of the form's choices.
export function builderSql(form) {
  const [open, close] = form.ends.value.split("");
  const range = `${open}${number(form.lo.value, "the range's start")}, ${number(form.hi.value, "the range's end")}${close}`;
  const roi = roiText(form);
  const grouped = form.unit.value === "image";
  const mask = grouped ? `${form.agg.value}(mask)` : "mask";
  let term = `CP(${mask}, ${roi}, ${range})`;
  if (form.measure.value === "share") term += ` / area(${roi})`;
  const where = form.where.value.trim();
  const keys = grouped ? "image_id" : "mask_id, image_id";
  const lines = [`SELECT ${keys}, ${term} AS score`, "FROM masks"];
  const topk = form.mode.value === "topk";
  const condition = `score ${form.op.value} ${number(form.threshold.value, "the threshold")}`;
  if (grouped) {
    if (where) lines.push(`WHERE ${where}`);
    lines.push("GROUP BY image_id");
    if (!topk) lines.push(`HAVING ${condition}`);
  } else if (topk) {
    if (where) lines.push(`WHERE ${where}`);
  } else {
    lines.push(`WHERE ${condition}${where ? ` AND (${where})` : ""}`);
  }
  if (topk) {
    const k = Math.max(1, Math.round(Number(form.k.value) || 25));
    lines.push(`ORDER BY score ${form.order.value}`, `LIMIT ${k}`);
  }
  return lines.join("\n");
}

export class Builder {
  constructor(form, onSql) {
    this.form = form;
    this.onSql = onSql;
    this.sampleId = null;
    this.drawing = null;
    form.addEventListener("change", () => this.update());
    form.addEventListener("submit", (event) => { event.preventDefault(); this.write(false); });
    form.querySelector("#builder-run").addEventListener("click", () => this.write(true));
    this.setupDrawing();
    this.update();
  }

  // Offer the database's box columns as regions; a sample mask to draw on.
  setColumns(columns, sampleId) {
    const select = this.form.roi;
    select.replaceChildren(el("option", { value: "full", text: "full mask" }));
    for (const c of columns.filter((c) => c.type === "box")) {
      select.append(el("option", { value: c.name, text: `box column ${c.name}` }));
    }
    select.append(el("option", { value: "__box", text: "a box typed below" }),
      el("option", { value: "__drawn", text: "a box drawn on a sample mask" }));
    if (columns.some((c) => c.type === "box")) select.selectedIndex = 1;
    this.sampleId = sampleId;
    this.update();
  }

  write(run) {
    try {
      this.onSql(builderSql(this.form), run, null);
    } catch (e) {
      this.onSql(null, false, e.message);
    }
  }

  update() {
    const f = this.form;
    const grouped = f.unit.value === "image";
    const topk = f.mode.value === "topk";
    f.querySelectorAll(".group-only").forEach((n) => { n.hidden = !grouped; });
    f.querySelectorAll(".topk-only").forEach((n) => { n.hidden = !topk; });
    f.querySelectorAll(".filter-only").forEach((n) => { n.hidden = topk; });
    // One aggregated mask per group: its region is the full mask or a fixed box.
    for (const option of f.roi.options) {
      option.disabled = grouped && !["full", "__box", "__drawn"].includes(option.value);
    }
    if (f.roi.selectedOptions[0] && f.roi.selectedOptions[0].disabled) f.roi.value = "full";
    const boxed = f.roi.value === "__box" || f.roi.value === "__drawn";
    f.querySelector(".roi-box").hidden = !boxed;
    const area = f.querySelector(".draw-area");
    area.hidden = f.roi.value !== "__drawn" || this.sampleId === null;
    if (!area.hidden) {
      const img = f.querySelector(".draw-img");
      const src = pictureUrl(this.sampleId, null, null, false);
      if (img.getAttribute("src") !== src) img.setAttribute("src", src);
    }
  }

  setupDrawing() {
    const frame = this.form.querySelector(".draw-frame");
    const img = this.form.querySelector(".draw-img");
    const rect = this.form.querySelector(".draw-rect");
    const toMask = (event) => {
      const box = img.getBoundingClientRect();
      const sx = img.naturalWidth / box.width;
      const sy = img.naturalHeight / box.height;
      return [Math.max(0, Math.min(img.naturalWidth, Math.round((event.clientX - box.left) * sx))),
        Math.max(0, Math.min(img.naturalHeight, Math.round((event.clientY - box.top) * sy))), sx, sy];
    };
    frame.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      this.drawing = toMask(event);
      frame.setPointerCapture(event.pointerId);
    });
    frame.addEventListener("pointermove", (event) => {
      if (this.drawing) this.showBox(rect, this.drawing, toMask(event));
    });
    frame.addEventListener("pointerup", (event) => {
      if (!this.drawing) return;
      const end = toMask(event);
      this.showBox(rect, this.drawing, end);
      const f = this.form;
      [f.x0.value, f.x1.value] = [Math.min(this.drawing[0], end[0]), Math.max(this.drawing[0], end[0])];
      [f.y0.value, f.y1.value] = [Math.min(this.drawing[1], end[1]), Math.max(this.drawing[1], end[1])];
      this.drawing = null;
    });
  }

  showBox(rect, start, end) {
    const [sx, sy] = [start[2], start[3]];
    rect.hidden = false;
    rect.style.left = `${Math.min(start[0], end[0]) / sx}px`;
    rect.style.top = `${Math.min(start[1], end[1]) / sy}px`;
    rect.style.width = `${Math.abs(end[0] - start[0]) / sx}px`;
    rect.style.height = `${Math.abs(end[1] - start[1]) / sy}px`;
  }
}
