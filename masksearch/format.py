"""Render Arrow tables as aligned text, Markdown, CSV or JSON, and database info as text
(CLI and REPL output)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import pyarrow as pa


def _cell(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_cell(x)}" for k, x in v.items()) + "}"
    return str(v)


def format_table(table: pa.Table, max_rows: int | None = 50) -> str:
    """An aligned text table; numbers right-aligned; rows beyond ``max_rows`` noted, not shown."""
    names = table.column_names
    shown = table if max_rows is None else table.slice(0, max_rows)
    cols = [[_cell(v) for v in c.to_pylist()] for c in shown.columns]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]
    widths = [max([len(n)] + [len(v) for v in col]) for n, col in zip(names, cols, strict=True)]

    def line(values: Sequence[str]) -> str:
        return " | ".join(v.rjust(w) if num else v.ljust(w)
                          for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in zip(*cols, strict=True)] if cols else []
    if shown.num_rows < table.num_rows:
        out.append(f"... {table.num_rows - shown.num_rows} more rows not shown")
    return "\n".join(out)


def format_csv(table: pa.Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.column_names)
    for row in zip(*[c.to_pylist() for c in table.columns], strict=True):
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def _csv_cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, dict):
        # Boxes as "x0,y0,x1,y1": the form `masksearch ingest --metadata` reads back.
        return ",".join(str(x) for x in v.values())
    return v


def format_json(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), indent=1, default=str)


def format_markdown(table: pa.Table, max_rows: int | None = None) -> str:
    """A GitHub-flavoured Markdown table (``|`` in values escaped)."""
    shown = table if max_rows is None else table.slice(0, max_rows)
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]
    cols = [[_cell(v).replace("|", "\\|") for v in c.to_pylist()] for c in shown.columns]
    out = ["| " + " | ".join(table.column_names) + " |",
           "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in zip(*cols, strict=True)] if cols else []
    if shown.num_rows < table.num_rows:
        out.append(f"\n... {table.num_rows - shown.num_rows} more rows not shown")
    return "\n".join(out)


FORMATS = ("table", "csv", "json", "markdown")


def format_result(table: pa.Table, mode: str, max_rows: int | None = None) -> str:
    """``table`` rendered in one of ``FORMATS`` (``max_rows`` limits table and markdown)."""
    if mode == "csv":
        return format_csv(table).rstrip("\n")
    if mode == "json":
        return format_json(table)
    if mode == "markdown":
        return format_markdown(table, max_rows)
    return format_table(table, max_rows)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _counts(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items()) or "-"


def format_info(info: dict) -> str:
    """``Database.info()`` as readable text."""
    segs = info["segments"]
    lines = [
        f"database   {info['path']}",
        f"masks      {info['masks']} in {segs} segment{'s' if segs != 1 else ''}",
        f"dtypes     {_counts(info['dtypes'])}",
        f"shapes     {_counts(info['shapes'])}",
        f"cell size  {info['cell_size']} px",
        f"codec      {info['codec']}",
        f"indexing   {info['index_mode']}: {info['indexed_masks']} of {info['masks']} masks "
        "have a CHI",
        f"pixels     {human_bytes(info['pixel_bytes'])} (compressed)",
        f"index      {human_bytes(info['index_bytes'])} "
        f"({info['index_share'] * 100:.1f}% of the pixel bytes)",
    ]
    memory = info.get("index_memory")
    if memory:
        lines.append(f"memory     index {human_bytes(memory['held'])} held, "
                     f"{human_bytes(memory['decoded'])} decoded (cache "
                     f"{human_bytes(memory['cache_used'])} of "
                     f"{human_bytes(memory['cache_budget'])})")
    prepared = info.get("prepared_aggregates") or {}
    if prepared:
        lines.append(f"prepared   {_counts(prepared)} aggregated masks' CHIs "
                     "(prepare_aggregates)")
    lines += [
        "columns",
    ]
    width = max((len(c) for c in info["columns"]), default=0)
    lines += [f"  {name.ljust(width)}  {kind}" for name, kind in info["columns"].items()]
    return "\n".join(lines)
