"""Resolve statements that change data against the database's columns.

DELETE and UPDATE find their rows with a query (``SELECT mask_id[, new values] FROM masks
WHERE ...``), bound like any other, so the index decides their predicates as it decides a
SELECT's; ALTER TABLE is checked here and carried out by the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import ast
from .binder import TABLE_NAMES, BoundQuery, bind
from .levels import has_aggregate
from .types import BOX, LOGICAL_TO_TYPE, NULL, TypeChecker, located_error, source

# Type names of ALTER TABLE ... ADD COLUMN -> column types as stored.
TYPE_NAMES = {"BIGINT": "int64", "INTEGER": "int64", "INT": "int64", "DOUBLE": "float64",
              "FLOAT": "float64", "REAL": "float64", "VARCHAR": "string", "TEXT": "string",
              "BOOLEAN": "bool", "BOOL": "bool", "BOX": "box"}
FIXED = ("mask_id", "height", "width")     # cannot be set or dropped
SYSTEM = ("mask_id", "image_id", "model_id", "mask_type", "height", "width")  # not dropped
RESERVED = (*SYSTEM, "mask")


@dataclass(frozen=True)
class BoundDelete:
    """DELETE: ``query`` selects the mask ids of the rows to delete."""

    text: str
    query: BoundQuery
    explain: bool = False
    analyze: bool = False


@dataclass(frozen=True)
class BoundUpdate:
    """UPDATE: ``query`` selects mask_id and then the new value of each of ``columns``;
    ``boxes`` are the columns set to a box literal, with that box."""

    text: str
    query: BoundQuery
    columns: tuple[str, ...]
    explain: bool = False
    analyze: bool = False
    boxes: tuple[tuple[str, dict[str, int]], ...] = ()
    positions: tuple[ast.Pos, ...] = ()     # of each of ``columns``' values, for errors


@dataclass(frozen=True)
class BoundAddColumn:
    text: str
    name: str
    kind: str                     # column type as stored (int64, float64, string, bool, box)
    default: object = None        # a JSON value: number, text, bool, or a box as a dict


@dataclass(frozen=True)
class BoundDropColumn:
    text: str
    name: str


BoundChange = BoundDelete | BoundUpdate | BoundAddColumn | BoundDropColumn


def bind_change(stmt: ast.Change | ast.Explain, text: str,
                columns: Mapping[str, str]) -> BoundChange:
    """Check a statement that changes data against ``columns`` (name -> type) and resolve
    it; ``BindError`` located in ``text`` when it cannot run."""
    explain = isinstance(stmt, ast.Explain)
    analyze = isinstance(stmt, ast.Explain) and stmt.analyze
    node = stmt.select if isinstance(stmt, ast.Explain) else stmt
    _check_table(node, text)
    if isinstance(node, ast.Delete):
        return BoundDelete(text, _rows_query(node, (), text, columns), explain, analyze)
    if isinstance(node, ast.Update):
        return _bind_update(node, text, columns, explain, analyze)
    if isinstance(node, ast.AddColumn):
        return _bind_add(node, text, columns)
    if isinstance(node, ast.DropColumn):
        return BoundDropColumn(text, _existing(node.name, node.name_pos, text, columns,
                                               SYSTEM, "dropped"))
    raise located_error(text, f"unexpected {type(node).__name__}", node)


def _check_table(node: object, text: str) -> None:
    table = getattr(node, "table", "")
    if table.lower() not in TABLE_NAMES:
        raise located_error(text, f"unknown table {table!r}; the table is 'masks'", node)


def _rows_query(node: ast.Delete | ast.Update, values: tuple[ast.Expr, ...], text: str,
                columns: Mapping[str, str]) -> BoundQuery:
    """``SELECT mask_id, values... FROM masks WHERE <the statement's predicate>``, bound."""
    items = (ast.SelectItem(ast.Column("mask_id"), "mask_id"),
             *(ast.SelectItem(v, None, v.pos) for v in values))
    select = ast.Select(items, "masks", node.where, (), None, (), None, node.pos)
    if node.where is not None and has_aggregate(node.where):
        raise located_error(text, "WHERE cannot use aggregates in "
                            f"{type(node).__name__.upper()}", node.where)
    return bind(select, text, columns)


def _bind_update(node: ast.Update, text: str, columns: Mapping[str, str], explain: bool,
                 analyze: bool) -> BoundUpdate:
    targets: list[str] = []
    values: list[ast.Assignment] = []
    boxes: list[tuple[str, dict[str, int]]] = []
    for a in node.assignments:
        if a.column.lower() == "mask":
            raise located_error(text, "the pixels cannot be set (UPDATE sets metadata "
                                "columns)", ast.Column(a.column, a.pos))
        name = _existing(a.column, a.pos, text, columns, FIXED, "set")
        if name in targets:
            raise located_error(text, f"column {name!r} is set twice", a)
        targets.append(name)
        if isinstance(a.expr, ast.BoxRoi):
            boxes.append((name, _box_value(a.expr, name, columns[name], text)))
            continue
        if has_aggregate(a.expr):
            raise located_error(text, "SET cannot use aggregates", a.expr)
        values.append(ast.Assignment(name, a.expr, a.pos))
    query = _rows_query(node, tuple(a.expr for a in values if isinstance(a.expr, ast.Expr)),
                        text, columns)
    checker = TypeChecker(text, {n: LOGICAL_TO_TYPE[k] for n, k in columns.items()})
    for a, value in zip(values, query.outputs[1:], strict=True):
        want, got = LOGICAL_TO_TYPE[columns[a.column]], checker.type_of(value)
        if NULL not in (want, got) and want != got:
            raise located_error(text, f"column {a.column!r} holds {columns[a.column]} values; "
                                f"{source(text, a.expr)} is {got}", a.expr)
    return BoundUpdate(text, query, tuple(a.column for a in values), explain, analyze,
                       tuple(boxes), tuple(a.expr.pos for a in values))


def _box_value(box: ast.BoxRoi, name: str, kind: str, text: str) -> dict[str, int]:
    if kind not in ("box", "null"):
        raise located_error(text, f"column {name!r} holds {kind} values; a box cannot go "
                            "into it", box)
    if box.x1 < box.x0 or box.y1 < box.y0:
        raise located_error(text, f"box({box.x0}, {box.y0}, {box.x1}, {box.y1}) has x1 < x0 "
                            "or y1 < y0 (a box is x0, y0, x1, y1)", box)
    return {"x0": box.x0, "y0": box.y0, "x1": box.x1, "y1": box.y1}


def _existing(name: str, pos: ast.Pos, text: str, columns: Mapping[str, str],
              protected: tuple[str, ...], verb: str) -> str:
    """The column named ``name`` (case-insensitively), which may be ``verb``-ed."""
    found = next((c for c in columns if c.lower() == name.lower()), None)
    where = ast.Column(name, pos)
    if found is None:
        raise located_error(text, f"unknown column {name!r}; columns are: "
                            f"{', '.join(columns)}", where)
    if found in protected:
        raise located_error(text, f"column {found!r} cannot be {verb} (mask_id, height, "
                            "width and the pixels are fixed; image_id, model_id and "
                            "mask_type are always there)", where)
    return found


def _bind_add(node: ast.AddColumn, text: str, columns: Mapping[str, str]) -> BoundAddColumn:
    where = ast.Column(node.name, node.name_pos)
    if not node.name.isidentifier() or node.name.startswith("_") or \
            node.name.lower() in RESERVED:
        raise located_error(text, f"column name {node.name!r} is reserved (so are names "
                            "starting with '_')", where)
    clash = next((c for c in columns if c.lower() == node.name.lower()), None)
    if clash is not None:
        raise located_error(text, f"column {clash!r} exists already", where)
    kind = TYPE_NAMES.get(node.type_name.upper())
    if kind is None:
        raise located_error(text, f"unknown type {node.type_name!r}; the types are BIGINT, "
                            "DOUBLE, VARCHAR, BOOLEAN and BOX", ast.Column("", node.type_pos))
    return BoundAddColumn(text, node.name, kind, _default(node, kind, text))


def _default(node: ast.AddColumn, kind: str, text: str) -> object:
    """The DEFAULT as a stored value of type ``kind`` (None: NULL)."""
    d = node.default
    if d is None:
        return None
    if isinstance(d, ast.BoxRoi):
        if kind != "box":
            raise located_error(text, f"a box cannot be the DEFAULT of a {node.type_name} "
                                "column", d)
        if d.x1 < d.x0 or d.y1 < d.y0:
            raise located_error(text, "the DEFAULT box has x1 < x0 or y1 < y0", d)
        return {"x0": d.x0, "y0": d.y0, "x1": d.x1, "y1": d.y1}
    if not isinstance(d, ast.Literal):
        raise located_error(text, "DEFAULT takes a constant (a number, text, TRUE, FALSE, "
                            "NULL or box(...))", d)
    return _literal_default(d, kind, node.type_name, text)


def _literal_default(d: ast.Literal, kind: str, type_name: str, text: str) -> object:
    v = d.value
    fits = (v is None or (kind == "bool" and isinstance(v, bool))
            or (kind == "string" and isinstance(v, str))
            or (kind == "int64" and isinstance(v, int) and not isinstance(v, bool))
            or (kind == "float64" and isinstance(v, (int, float)) and not isinstance(v, bool)))
    if not fits or kind == BOX:
        raise located_error(text, f"DEFAULT {source(text, d)} is not a {type_name} value", d)
    if kind == "float64" and isinstance(v, (int, float)):
        return float(v)
    return v
