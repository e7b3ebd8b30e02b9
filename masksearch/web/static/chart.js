// The chart of what the index did: one stacked bar per run (with the index, without it),
// masks decided without reading pixels against masks read, and each run's time.

import { svg, el, clear } from "./dom.js";

const PARTS = [
  ["rejected_by_metadata", "rejected by metadata", "part-meta"],
  ["accepted_by_index", "accepted by the index", "part-accept"],
  ["rejected_by_index", "rejected by the index", "part-reject"],
  ["skipped", "never reached (bounds or LIMIT stopped early)", "part-skip"],
  ["read", "pixels read", "part-read"],
];

// Masks neither decided by a filter nor read: a top-k or LIMIT that stopped before them
// (with the index, because their bounds could not beat the rows found).
function parts(stats) {
  const decided = stats.rejected_by_metadata + stats.accepted_by_index + stats.rejected_by_index;
  return { ...stats, skipped: Math.max(0, stats.masks_total - decided - stats.verified),
    read: stats.verified };
}

function bar(y, label, stats, width) {
  const values = parts(stats);
  const total = Math.max(1, stats.masks_total);
  const group = svg("g", { class: "bar", "data-run": label });
  group.append(svg("text", { x: 0, y: y + 15, class: "bar-label", text: label }));
  let x = 120;
  for (const [key, name, cls] of PARTS) {
    const w = (values[key] / total) * width;
    if (w <= 0) continue;
    const rect = svg("rect", { x, y, width: w, height: 22, class: cls });
    rect.append(svg("title", { text: `${name}: ${values[key]}` }));
    group.append(rect);
    x += w;
  }
  const ms = (stats.seconds * 1000).toFixed(1);
  group.append(svg("text", { x: 120 + width + 8, y: y + 15, class: "bar-time",
    text: `${ms} ms, ${values.read} of ${stats.masks_total} read` }));
  return group;
}

export function drawChart(container, runs) {
  clear(container);
  const entries = [["with index", runs.on], ["without", runs.off]].filter(([, s]) => s);
  if (!entries.length) return;
  const width = 360;
  const height = entries.length * 30 + 8;
  const chart = svg("svg", { viewBox: `0 0 ${width + 360} ${height}`, class: "chart",
    role: "img", "aria-label": "masks decided by the index against masks read" });
  entries.forEach(([label, stats], i) => chart.append(bar(4 + i * 30, label, stats, width)));
  const legend = el("ul", { class: "legend" },
    PARTS.map(([, name, cls]) => el("li", {}, el("span", { class: `swatch ${cls}` }), name)));
  const last = entries[0][1];
  const summary = el("p", { class: "muted" },
    `${last.masks_total} masks: ${last.masks_total - last.verified} decided without reading ` +
    `pixels, ${last.verified} read (${(last.bytes_read / 1e6).toFixed(2)} MB).`);
  if (runs.on && runs.off && runs.on.seconds > 0) {
    summary.append(` The index made this query ${(runs.off.seconds / runs.on.seconds).toFixed(1)}x faster.`);
  }
  container.append(chart, legend, summary);
}
