"""Render Arrow tables as aligned text, CSV or JSON (CLI and REPL output)."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa


def _cell(v) -> str:
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

    def line(values):
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


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, dict):
        # Boxes as "x0,y0,x1,y1": the form `masksearch ingest --metadata` reads back.
        return ",".join(str(x) for x in v.values())
    return v


def format_json(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), indent=1, default=str)
