"""The types of the language's expressions, and the checks that every operator gets the
types it takes (a string in arithmetic, a box in a comparison, a number as a predicate)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BindError
from . import ast

NUMBER, STRING, BOOL, BOX, NULL = "number", "string", "bool", "box", "null"
# Column types as stored (``masksearch.store.metadata``) -> types of the language.
LOGICAL_TO_TYPE = {"int64": NUMBER, "float64": NUMBER, "string": STRING, "bool": BOOL,
                   "box": BOX, "null": NULL}


def source(text: str, node: object) -> str:
    """The query text of ``node`` (whitespace folded), or its type name without position."""
    pos = getattr(node, "pos", None)
    if pos is None:
        return type(node).__name__
    return " ".join(text[pos[2]:pos[3]].split())


def located_error(text: str, message: str, node: object) -> BindError:
    """A ``BindError`` at ``node``'s position in ``text`` (unlocated if it has none)."""
    pos = getattr(node, "pos", None)
    if pos is None:
        return BindError(message)
    return BindError(message, text, pos[0], pos[1])


class TypeChecker:
    """Types of bound expressions over columns of the given types (name -> type)."""

    def __init__(self, text: str, types: Mapping[str, str]):
        self.text = text
        self.types = types
        self._rules: dict[type, Callable[[Any], str]] = {
            ast.Literal: self._literal, ast.Column: lambda e: self.types[e.name],
            ast.CP: lambda e: NUMBER, ast.Area: lambda e: NUMBER, ast.Neg: self._neg,
            ast.BinOp: self._binop, ast.Compare: self._compare, ast.And: self._logic,
            ast.Or: self._logic, ast.Not: self._not, ast.IsNull: self._is_null,
            ast.Aggregate: self._aggregate}

    def type_of(self, e: ast.Expr) -> str:
        """The type of ``e``, checking every operator in it; a ``BindError`` at the first
        operand of the wrong type."""
        rule = self._rules.get(type(e))
        if rule is None:
            raise located_error(self.text, f"unexpected {type(e).__name__}", e)
        return rule(e)

    def require(self, e: ast.Expr, kind: str, where: str) -> None:
        """``e`` must be of type ``kind`` (or NULL) to be used in ``where``."""
        t = self.type_of(e)
        if t not in (kind, NULL):
            raise located_error(self.text, f"{where} needs a "
                                f"{'predicate' if kind == BOOL else kind}, got {t}: "
                                f"{source(self.text, e)}", e)

    def _literal(self, e: ast.Literal) -> str:
        v = e.value
        if v is None:
            return NULL
        if isinstance(v, bool):
            return BOOL
        return STRING if isinstance(v, str) else NUMBER

    def _neg(self, e: ast.Neg) -> str:
        self.require(e.operand, NUMBER, "unary minus")
        return NUMBER

    def _binop(self, e: ast.BinOp) -> str:
        self.require(e.left, NUMBER, f"'{e.op}'")
        self.require(e.right, NUMBER, f"'{e.op}'")
        return NUMBER

    def _compare(self, e: ast.Compare) -> str:
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        for side, t in ((e.left, lt), (e.right, rt)):
            if t == BOX:
                raise located_error(self.text, "a box cannot be compared: "
                                    f"{source(self.text, side)}", side)
        if NULL not in (lt, rt) and lt != rt:
            raise located_error(self.text, f"cannot compare {lt} with {rt}: "
                                f"{source(self.text, e)}", e)
        return BOOL

    def _logic(self, e: ast.And | ast.Or) -> str:
        for x in e.items:
            self.require(x, BOOL, "AND" if isinstance(e, ast.And) else "OR")
        return BOOL

    def _not(self, e: ast.Not) -> str:
        self.require(e.operand, BOOL, "NOT")
        return BOOL

    def _is_null(self, e: ast.IsNull) -> str:
        self.type_of(e.operand)
        return BOOL

    def _aggregate(self, e: ast.Aggregate) -> str:
        if e.arg is not None:
            self.require(e.arg, NUMBER, e.func.upper())
        return NUMBER
