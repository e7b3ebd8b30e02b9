// The page: loads the database's facts, runs queries as background jobs (polling their
// progress, cancel on request), pages through results, keeps the query in the URL.

import { el, clear, show } from "./dom.js";
import * as api from "./api.js";
import { Editor } from "./editor.js";
import { Builder } from "./builder.js";
import { drawChart } from "./chart.js";
import { addGroupPictures, drawCards, drawTable } from "./grid.js";
import { Detail } from "./detail.js";

const $ = (selector) => document.querySelector(selector);
const POLL_MS = 120;

const state = {
  job: null,          // id of the query whose rows are shown, or that runs
  running: false,
  offset: 0,
  page: null,         // the last page of rows received
  runs: { sql: null, on: null, off: null },
};

const editor = new Editor($("#sql"), $("#sql-highlight"), $("#sql-error"));
const detail = new Detail($("#detail"));
const pageSize = () => Number($("#page-size").value);
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function setStatus(text, cls = "muted") {
  const status = $("#status");
  status.className = cls;
  status.textContent = text;
}

function setRunning(running) {
  state.running = running;
  $("#cancel").disabled = !running;
  for (const id of ["#run", "#explain", "#compare"]) $(id).disabled = running;
  $("#progress").hidden = !running;
  document.body.classList.toggle("busy", running);
}

function showProgress(job) {
  const bar = $("#progress");
  const { done, total } = job.progress;
  if (total > 0) { bar.max = total; bar.value = done; } else bar.removeAttribute("value");
  const counted = total > 0 ? `, ${done} of ${total} masks read` : "";
  const what = job.state === "queued" ? "waiting for a free worker" : "running";
  setStatus(`${what} ${job.elapsed.toFixed(1)} s${counted}`);
}

// Start a query and wait for it; the first page of rows, or null if it failed.
async function runJob(sql, useIndex) {
  const started = await api.startQuery(sql, useIndex);
  state.job = started.id;
  let wait = 5;   // most queries take milliseconds: ask soon, then less and less often
  for (;;) {
    const job = await api.queryState(started.id, 0, pageSize());
    if (job.state === "done") return job;
    if (job.state === "failed" || job.state === "cancelled") throw new api.ApiError(200, job);
    showProgress(job);
    await sleep(wait);
    wait = Math.min(POLL_MS, wait * 2);
  }
}

function failed(error) {
  const body = error.body || {};
  if (body.kind === "cancelled") {
    setStatus("query cancelled", "warn");
  } else if (body.kind === "syntax" || body.kind === "bind") {
    editor.showError({ title: body.kind === "syntax" ? "Syntax error" : "Error",
      message: body.error, line: body.line, column: body.column });
    setStatus("the query has an error", "error");
  } else {
    editor.showError({ title: "Error", message: error.message });
    setStatus(error.message, "error");
  }
}

function remember(sql, useIndex, stats) {
  if (state.runs.sql !== sql) state.runs = { sql, on: null, off: null };
  state.runs[useIndex ? "on" : "off"] = stats;
  $("#stats-section").hidden = false;
  drawChart($("#chart"), state.runs);
}

function pushUrl(sql, useIndex) {
  const params = new URLSearchParams({ sql });
  if (!useIndex) params.set("index", "off");
  const url = `/?${params.toString()}`;
  if (`${location.pathname}${location.search}` !== url) history.pushState({ sql }, "", url);
}

async function run({ useIndex = $("#use-index").checked, record = true } = {}) {
  const sql = editor.value.trim();
  if (!sql || state.running) return;
  editor.showError(null);
  $("#plan").hidden = true;
  setRunning(true);
  setStatus("starting");
  try {
    const page = await runJob(sql, useIndex);
    remember(sql, useIndex, page.stats);
    if (record) pushUrl(sql, useIndex);
    state.offset = 0;
    showPage(page);
    const rows = `${page.total_rows} row${page.total_rows === 1 ? "" : "s"}`;
    setStatus(`${rows} in ${(page.stats.seconds * 1000).toFixed(1)} ms` +
      `${useIndex ? "" : " without the index"}` +
      `${page.truncated ? " (cut to the server's row limit)" : ""}`, "ok");
    return page;
  } catch (e) {
    failed(e);
    return null;
  } finally {
    setRunning(false);
  }
}

async function compare() {
  const first = await run({ useIndex: true });
  if (first) await run({ useIndex: false, record: false });
}

async function explain() {
  const sql = editor.value.trim();
  if (!sql || state.running) return;
  const text = /^\s*explain\b/i.test(sql) ? sql : `EXPLAIN ANALYZE ${sql}`;
  editor.showError(null);
  setRunning(true);
  try {
    const page = await runJob(text, $("#use-index").checked);
    const plan = $("#plan");
    plan.textContent = page.rows.map((r) => r[0]).join("\n");
    plan.hidden = false;
    $("#stats-section").hidden = false;
    setStatus("EXPLAIN ANALYZE done", "ok");
  } catch (e) {
    failed(e);
  } finally {
    setRunning(false);
  }
}

function openDetail(maskId, page, row) { detail.open(maskId, page, row); }

function showPage(page) {
  state.page = page;
  const view = document.querySelector("input[name=view]:checked").value;
  const hasMasks = page.columns.includes("mask_id");
  const cards = view === "cards" && hasMasks;
  const plan = page.columns.length === 1 && page.columns[0] === "plan";   // EXPLAIN
  const grouped = view === "cards" && !hasMasks && !plan && page.rows.length > 0;
  $("#grid").hidden = !(cards || grouped);
  $("#table-view").hidden = cards || grouped;
  $("#grid").classList.toggle("groups", grouped);
  if (cards || grouped) drawCards($("#grid"), page, openDetail);
  else drawTable($("#table-view"), page, openDetail);
  if (grouped && state.job) groupPictures(state.job, page);
  const end = Math.min(page.total_rows, page.offset + page.rows.length);
  $("#page-info").textContent = page.total_rows
    ? `rows ${page.offset + 1}-${end} of ${page.total_rows}` : "no rows";
  $("#prev").disabled = page.offset <= 0;
  $("#next").disabled = end >= page.total_rows;
}

async function groupPictures(job, page) {
  try {
    const got = await api.queryCards(job, page.offset, page.rows.length);
    if (state.page !== page) return;             // another page is shown by now
    addGroupPictures($("#grid"), page, got.cards, openDetail);
    if (got.note) setStatus(got.note, "muted");
  } catch (e) {
    setStatus(`no pictures for these rows: ${e.message}`, "warn");
  }
}

async function turn(delta) {
  if (!state.page || !state.job) return;
  const offset = Math.max(0, state.page.offset + delta * pageSize());
  try {
    showPage(await api.queryState(state.job, offset, pageSize()));
  } catch (e) {
    if (e.status === 404) await run({ record: false });   // the server forgot it: run again
    else failed(e);
  }
}

async function cancel() {
  if (!state.running || !state.job) return;
  setStatus("cancelling");
  try { await api.cancelQuery(state.job); } catch (e) { failed(e); }
}

function sidePanel(info) {
  $("#db-path").textContent = info.path;
  const mode = $("#db-mode");
  mode.textContent = info.read_only ? "read-only" : "writes allowed";
  const shapes = Object.entries(info.shapes).map(([s, n]) => `${s}: ${n}`).join(", ");
  const dtypes = Object.entries(info.dtypes).map(([s, n]) => `${s}: ${n}`).join(", ");
  clear($("#db-summary")).append(el("dl", { class: "facts" },
    el("dt", { text: "masks" }), el("dd", { text: String(info.masks) }),
    el("dt", { text: "dtypes" }), el("dd", { text: dtypes || "none" }),
    el("dt", { text: "shapes" }), el("dd", { text: shapes || "none" }),
    el("dt", { text: "index" }), el("dd", { text: `${info.index.indexed_masks} indexed, ` +
      `${(info.index.share * 100).toFixed(2)}% of the pixel bytes` }),
    el("dt", { text: "images" }), el("dd", { text: info.image_root || "no image root" })));
  const list = clear($("#columns"));
  for (const c of info.columns) {
    const item = el("li", { "data-column": c.name },
      el("span", { class: "col-name", text: c.name }), " ", el("span", { class: "col-type", text: c.type }));
    if (c.distinct !== undefined) {
      item.append(el("span", { class: "muted", text: ` ${c.distinct} distinct` }));
    }
    if (c.top) {
      item.append(el("ul", { class: "values" }, c.top.map(([v, n]) =>
        el("li", {}, el("span", { class: "value", text: show(v) }), el("span", { class: "count", text: String(n) })))));
    } else if (c.non_null !== undefined) {
      item.append(el("span", { class: "muted", text: ` ${c.non_null} not NULL` }));
    }
    list.append(item);
  }
}

function fromUrl() {
  const params = new URLSearchParams(location.search);
  const sql = params.get("sql");
  if (sql === null) return false;
  editor.value = sql;
  $("#use-index").checked = params.get("index") !== "off";
  return true;
}

async function start() {
  const builder = new Builder($("#builder-form"), (sql, andRun, problem) => {
    if (problem) { editor.showError({ title: "Builder", message: problem }); return; }
    editor.value = sql;
    if (andRun) run();
  });
  $("#run").addEventListener("click", () => run());
  $("#compare").addEventListener("click", () => compare());
  $("#explain").addEventListener("click", () => explain());
  $("#cancel").addEventListener("click", () => cancel());
  $("#prev").addEventListener("click", () => turn(-1));
  $("#next").addEventListener("click", () => turn(1));
  $("#page-size").addEventListener("change", () => turn(0));
  document.querySelectorAll("input[name=view]").forEach((r) =>
    r.addEventListener("change", () => { if (state.page) showPage(state.page); }));
  $("#sql").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
  });
  window.addEventListener("popstate", () => { if (fromUrl()) run({ record: false }); });
  const panel = loadPanel(builder);          // at the same time as the query of the URL
  if (fromUrl()) await run({ record: false });
  await panel;
  document.body.setAttribute("data-ready", "true");
}

async function loadPanel(builder) {
  try {
    const [info, first] = await Promise.all([api.getInfo(),
      api.query("SELECT mask_id FROM masks LIMIT 1").catch(() => null)]);
    sidePanel(info);
    builder.setColumns(info.columns, first && first.rows.length ? first.rows[0][0] : null);
  } catch (e) {
    setStatus(`cannot read the database: ${e.message}`, "error");
  }
}

start();
