// The SQL editor: a textarea over a <pre> that shows the same text highlighted (keywords,
// functions, numbers, strings, comments) and, after a failed run, the error's position.

import { el, clear } from "./dom.js";

const KEYWORDS = new Set(("select from where group by having order asc desc limit and or not " +
  "is null in between as explain analyze true false distinct masks full full_image box " +
  "delete update set alter insert into values").split(" "));
const FUNCTIONS = new Set("cp area count sum avg min max intersect union mean".split(" "));
const TOKEN = /(--[^\n]*)|('(?:[^']|'')*'?)|(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|([\s\S])/g;

function tokenClass(match) {
  if (match[1]) return "tok-comment";
  if (match[2]) return "tok-string";
  if (match[3]) return "tok-number";
  if (match[4]) {
    const word = match[4].toLowerCase();
    if (KEYWORDS.has(word)) return "tok-keyword";
    if (FUNCTIONS.has(word)) return "tok-function";
  }
  return null;
}

// Offset of (line, column), both counted from 1, in text.
function offsetOf(text, line, column) {
  let offset = 0;
  for (let i = 1; i < line; i += 1) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(offset + column - 1, text.length);
}

export class Editor {
  constructor(textarea, highlight, errorBox) {
    this.textarea = textarea;
    this.highlight = highlight;
    this.errorBox = errorBox;
    this.error = null;
    textarea.addEventListener("input", () => { this.error = null; this.render(); });
    textarea.addEventListener("scroll", () => this.syncScroll());
    this.render();
  }

  get value() { return this.textarea.value; }

  set value(text) {
    this.textarea.value = text;
    this.error = null;
    this.render();
  }

  syncScroll() {
    this.highlight.scrollTop = this.textarea.scrollTop;
    this.highlight.scrollLeft = this.textarea.scrollLeft;
  }

  // Show an error: {message, line, column}, or null to clear it.
  showError(error) {
    this.error = error;
    this.render();
  }

  render() {
    const text = this.textarea.value;
    const mark = this.error && this.error.line ? offsetOf(text, this.error.line, this.error.column) : -1;
    const pre = clear(this.highlight);
    for (const match of text.matchAll(TOKEN)) {
      const start = match.index;
      const end = start + match[0].length;
      if (mark >= start && mark < end) {
        this.appendToken(pre, text.slice(start, mark), match);
        pre.append(el("span", { class: "err-mark", title: this.error.message, text: text[mark] }));
        this.appendToken(pre, text.slice(mark + 1, end), match);
      } else {
        this.appendToken(pre, match[0], match);
      }
    }
    if (mark >= text.length) pre.append(el("span", { class: "err-mark err-end", text: " " }));
    pre.append("\n ");
    this.renderErrorBox();
    this.syncScroll();
  }

  appendToken(pre, piece, match) {
    if (!piece) return;
    const cls = tokenClass(match);
    pre.append(cls ? el("span", { class: cls, text: piece }) : document.createTextNode(piece));
  }

  renderErrorBox() {
    const box = clear(this.errorBox);
    if (!this.error) { box.hidden = true; return; }
    box.hidden = false;
    const where = this.error.line ? `line ${this.error.line}, column ${this.error.column}: ` : "";
    box.append(el("strong", { text: this.error.title || "Error" }), " ", where, this.error.message);
  }
}
