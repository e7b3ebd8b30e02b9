"""Typed, immutable AST of the query language.

Every node carries ``pos`` = (line, column, start offset, end offset) of its source text for
error messages and output column names; ``pos`` does
not take part in equality, so structurally equal expressions (two identical CP terms) compare
equal and hash alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Pos = tuple[int, int, int, int] | None


def _pos() -> Any:
    """The ``pos`` field: not part of equality or repr."""
    return field(default=None, compare=False, repr=False)


class Expr:
    """Base of expression nodes."""

    pos: Pos


@dataclass(frozen=True)
class Literal(Expr):
    value: object           # int, float, str, bool or None
    text: str = field(default="", compare=False)  # as written, e.g. to tell `ORDER BY 2` apart
    pos: Pos = _pos()


@dataclass(frozen=True)
class Column(Expr):
    name: str
    pos: Pos = _pos()


@dataclass(frozen=True)
class FullRoi:
    pos: Pos = _pos()


@dataclass(frozen=True)
class BoxRoi:
    x0: int
    y0: int
    x1: int
    y1: int
    pos: Pos = _pos()


@dataclass(frozen=True)
class ColumnRoi:
    name: str
    pos: Pos = _pos()


Roi = FullRoi | BoxRoi | ColumnRoi


@dataclass(frozen=True)
class Range:
    """An interval of pixel values; ``lo``/``hi`` are the exact decimal texts or +-inf."""

    lo: str
    lo_closed: bool
    hi: str
    hi_closed: bool
    pos: Pos = _pos()


@dataclass(frozen=True)
class MaskRef:
    aggregate: str | None = None   # None for `mask`, else intersect/union/mean
    pos: Pos = _pos()


@dataclass(frozen=True)
class CP(Expr):
    mask: MaskRef
    roi: Roi
    range: Range
    pos: Pos = _pos()


@dataclass(frozen=True)
class Area(Expr):
    roi: Roi
    pos: Pos = _pos()


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class BinOp(Expr):
    op: str                 # + - * /
    left: Expr
    right: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class Compare(Expr):
    op: str                 # = != < <= > >=
    left: Expr
    right: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class And(Expr):
    items: tuple[Expr, ...]
    pos: Pos = _pos()


@dataclass(frozen=True)
class Or(Expr):
    items: tuple[Expr, ...]
    pos: Pos = _pos()


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr
    negated: bool
    pos: Pos = _pos()


@dataclass(frozen=True)
class InList(Expr):
    operand: Expr
    items: tuple[Expr, ...]
    negated: bool
    pos: Pos = _pos()


@dataclass(frozen=True)
class Between(Expr):
    operand: Expr
    low: Expr
    high: Expr
    negated: bool
    pos: Pos = _pos()


@dataclass(frozen=True)
class Aggregate(Expr):
    func: str               # count, sum, avg, min, max
    arg: Expr | None        # None for COUNT(*)
    pos: Pos = _pos()


@dataclass(frozen=True)
class SelectItem:
    expr: Expr | None       # None for *
    alias: str | None
    pos: Pos = _pos()


@dataclass(frozen=True)
class OrderItem:
    expr: Expr
    descending: bool
    pos: Pos = _pos()


@dataclass(frozen=True)
class Select:
    items: tuple[SelectItem, ...]
    table: str
    where: Expr | None
    group_by: tuple[Expr, ...]
    having: Expr | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    pos: Pos = _pos()


@dataclass(frozen=True)
class Explain:
    select: Select | Delete | Update     # the statement explained
    analyze: bool
    pos: Pos = _pos()


def children(node: object) -> tuple[Expr, ...]:
    """Sub-expressions of an expression node (for generic walks)."""
    if isinstance(node, (Neg, Not, IsNull)):
        return (node.operand,)
    if isinstance(node, (BinOp, Compare)):
        return (node.left, node.right)
    if isinstance(node, (And, Or)):
        return node.items
    if isinstance(node, InList):
        return (node.operand, *node.items)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, Aggregate):
        return () if node.arg is None else (node.arg,)
    return ()


def walk(node: Expr) -> Iterator[Expr]:
    """Pre-order iteration over an expression tree."""
    yield node
    for child in children(node):
        yield from walk(child)


def has_terms(node: Expr) -> bool:
    """Whether an expression needs bounds: it holds a CP term or an aggregate."""
    return any(isinstance(n, (CP, Aggregate)) for n in walk(node))


# --- statements that change data ---

@dataclass(frozen=True)
class Delete:
    table: str
    where: Expr | None
    pos: Pos = _pos()


@dataclass(frozen=True)
class Assignment:
    column: str
    expr: Expr | BoxRoi     # a box literal, box(x0, y0, x1, y1), sets a BOX column
    pos: Pos = _pos()


@dataclass(frozen=True)
class Update:
    table: str
    assignments: tuple[Assignment, ...]
    where: Expr | None
    pos: Pos = _pos()


@dataclass(frozen=True)
class AddColumn:
    table: str
    name: str
    type_name: str
    default: Literal | BoxRoi | None
    pos: Pos = _pos()
    name_pos: Pos = _pos()
    type_pos: Pos = _pos()


@dataclass(frozen=True)
class DropColumn:
    table: str
    name: str
    pos: Pos = _pos()
    name_pos: Pos = _pos()


Change = Delete | Update | AddColumn | DropColumn
Statement = Select | Explain | Change
