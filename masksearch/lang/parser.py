"""Query text -> AST, with syntax errors located by line, column and caret."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from fractions import Fraction
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.tree import Meta

from ..errors import QuerySyntaxError
from . import ast

# Deepest parse tree accepted (about 120 levels of parentheses, or a chain of about 240
# operators, NOT or unary minus): the binder, planner and executor recurse over the tree.
MAX_TREE_DEPTH = 250
MAX_INT_DIGITS = 19        # every integer literal that fits int64 has at most 19 digits
MAX_EXPONENT = 10_000      # |decimal exponent| of number literals (10^10000 is still exact)

READABLE = {
    "NAME": "a name", "INT": "an integer", "NUMBER": "a number", "STRING": "a string",
    "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
    "RANGE_OPEN": "'[' or '('", "RANGE_CLOSE": "']' or ')'", "LPAR": "'('", "RPAR": "')'",
    "COMMA": "','", "SEMICOLON": "';'", "STAR": "'*'", "MINUS": "'-'", "PLUS": "'+'",
    "INF": "inf", "FULL": "full", "MASK": "mask", "MASK_AGG": "intersect/union/mean",
    "AGG_NAME": "an aggregate", "$END": "end of query",
}


@cache
def grammar_text() -> str:
    """The grammar (``grammar/masksearch.lark``, shipped as ``masksearch.grammar``)."""
    return (files("masksearch.grammar") / "masksearch.lark").read_text(encoding="utf-8")


@cache
def _parser() -> Lark:
    # cache=True: lark keeps the analysed LALR tables in a file of the temporary folder,
    # keyed by the grammar and options, so a new process does not analyse it again (0.2 s).
    return Lark(grammar_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=False, start=["start", "range"], cache=True)


def _readable(names: Iterable[str]) -> str:
    out = sorted({READABLE.get(n, n.lstrip("_").upper()) for n in names})
    return ", ".join(out[:12]) + (", ..." if len(out) > 12 else "")


def _pos(meta: Meta) -> ast.Pos:
    if getattr(meta, "empty", True):
        return None
    return (int(meta.line), int(meta.column), int(meta.start_pos), int(meta.end_pos))


def _tok_pos(tok: Token) -> ast.Pos:
    return (int(tok.line or 0), int(tok.column or 0), int(tok.start_pos or 0),
            int(tok.end_pos or 0))


def _exact_number(text: str) -> int | float:
    """An int for integer literals, else a float (inf when out of range); the text is kept
    for exact comparisons."""
    if all(c.isdigit() for c in text):
        return int(text) if len(text.lstrip("0")) <= MAX_INT_DIGITS else float("inf")
    if not _exponent_ok(text):
        return float("inf")
    frac = Fraction(text)
    return float("inf") if frac > Fraction(1.7976931348623157e308) else float(frac)


def _exponent_ok(text: str) -> bool:
    """False for literals like 1e999999999, whose exact value is too big to compute."""
    mantissa, _, exponent = text.lower().partition("e")
    if not exponent:
        return len(mantissa) <= MAX_EXPONENT
    digits = exponent.lstrip("+-").lstrip("0")
    return len(digits) <= 6 and int(digits or "0") <= MAX_EXPONENT \
        and len(mantissa) <= MAX_EXPONENT


def _small_int(tok: Token, text: str, what: str) -> int:
    """An integer token as an int, refusing digit strings beyond int64 before converting."""
    if len(str(tok).lstrip("0")) > MAX_INT_DIGITS:
        raise QuerySyntaxError(f"{what} {_short(str(tok))} is out of range", text, tok.line,
                               tok.column)
    return int(tok)


def _short(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:12]}...{text[-12:]} ({len(text)} characters)"


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive[Token, Any]):
    def __init__(self, text: str, minus_at: set[tuple[int, int]]):
        super().__init__()
        self.text = text
        self.minus_at = minus_at

    def _has_minus(self, meta: Meta) -> bool:
        return not meta.empty and (meta.line, meta.column) in self.minus_at

    def start(self, meta: Meta, c: list[Any]) -> ast.Statement | ast.Range:
        node = c[0]
        assert isinstance(node, (*STATEMENTS, ast.Range))
        return node

    def delete(self, meta: Meta, c: list[Any]) -> ast.Delete:
        where = c[1][1] if len(c) > 1 else None
        return ast.Delete(c[0], where, _pos(meta))

    def update(self, meta: Meta, c: list[Any]) -> ast.Update:
        where = c[-1][1] if isinstance(c[-1], tuple) else None
        items = tuple(x for x in c[1:] if isinstance(x, ast.Assignment))
        return ast.Update(c[0], items, where, _pos(meta))

    def assignment(self, meta: Meta, c: list[Any]) -> ast.Assignment:
        if str(c[1]) != "=":
            raise QuerySyntaxError(f"unexpected {str(c[1])!r}; SET takes column = value",
                                   self.text, c[1].line, c[1].column)
        return ast.Assignment(str(c[0]), c[2], _tok_pos(c[0]))

    def alter_add(self, meta: Meta, c: list[Any]) -> ast.AddColumn:
        default = c[3] if len(c) > 3 else None
        return ast.AddColumn(c[0], str(c[1]), str(c[2]), default, _pos(meta),
                             _tok_pos(c[1]), _tok_pos(c[2]))

    def alter_drop(self, meta: Meta, c: list[Any]) -> ast.DropColumn:
        return ast.DropColumn(c[0], str(c[1]), _pos(meta), _tok_pos(c[1]))

    def explain(self, meta: Meta, c: list[Any]) -> ast.Explain:
        analyze = any(isinstance(t, Token) and t.type == "ANALYZE" for t in c)
        return ast.Explain(c[-1], analyze, _pos(meta))

    def select(self, meta: Meta, c: list[Any]) -> ast.Select:
        parts: dict[str, Any] = {"where": None, "group_by": (), "having": None,
                                 "order_by": (), "limit": None}
        items, table = c[0], c[1]
        for kind, value in c[2:]:
            parts[kind] = value
        return ast.Select(tuple(items), table, **parts, pos=_pos(meta))

    def select_list(self, meta: Meta, c: list[Any]) -> list[ast.SelectItem]:
        return c

    def select_item(self, meta: Meta, c: list[Any]) -> ast.SelectItem:
        alias = str(c[1]) if len(c) > 1 else None
        return ast.SelectItem(c[0], alias, _pos(meta))

    def star(self, meta: Meta, c: list[Any]) -> ast.SelectItem:
        return ast.SelectItem(None, None, _pos(meta))

    def table_name(self, meta: Meta, c: list[Any]) -> str:
        return str(c[0])

    def where(self, meta: Meta, c: list[Any]) -> tuple[str, ast.Expr]:
        return "where", c[0]

    def group_by(self, meta: Meta, c: list[Any]) -> tuple[str, tuple[ast.Expr, ...]]:
        return "group_by", tuple(c)

    def having(self, meta: Meta, c: list[Any]) -> tuple[str, ast.Expr]:
        return "having", c[0]

    def order_by(self, meta: Meta, c: list[Any]) -> tuple[str, tuple[ast.OrderItem, ...]]:
        return "order_by", tuple(c)

    def order_item(self, meta: Meta, c: list[Any]) -> ast.OrderItem:
        desc = len(c) > 1 and c[1] == "DESC"
        return ast.OrderItem(c[0], desc, _pos(meta))

    def direction(self, meta: Meta, c: list[Any]) -> str:
        return str(c[0]).upper()

    def limit(self, meta: Meta, c: list[Any]) -> tuple[str, int]:
        if c[0].type != "INT":
            raise QuerySyntaxError(f"LIMIT needs a whole number, got {_short(str(c[0]))}",
                                   self.text, c[0].line, c[0].column)
        digits = str(c[0]).lstrip("0")  # a LIMIT beyond int64 limits nothing
        return "limit", int(digits or "0") if len(digits) <= MAX_INT_DIGITS else 2**63 - 1

    # --- expressions ---
    def or_(self, meta: Meta, c: list[Any]) -> ast.Expr:
        items = tuple(x for x in c if not isinstance(x, Token))
        return items[0] if len(items) == 1 else ast.Or(items, _pos(meta))

    def and_(self, meta: Meta, c: list[Any]) -> ast.Expr:
        items = tuple(x for x in c if not isinstance(x, Token))
        return items[0] if len(items) == 1 else ast.And(items, _pos(meta))

    def not_(self, meta: Meta, c: list[Any]) -> ast.Not:
        return ast.Not(c[-1], _pos(meta))

    def compare(self, meta: Meta, c: list[Any]) -> ast.Compare:
        op = "!=" if str(c[1]) == "<>" else str(c[1])
        return ast.Compare(op, c[0], c[2], _pos(meta))

    def is_null(self, meta: Meta, c: list[Any]) -> ast.IsNull:
        negated = any(isinstance(t, Token) and t.type == "NOT" for t in c)
        return ast.IsNull(c[0], negated, _pos(meta))

    def in_list(self, meta: Meta, c: list[Any]) -> ast.InList:
        negated = isinstance(c[1], Token) and c[1].type == "NOT"
        items = tuple(x for x in c[1:] if not isinstance(x, Token))
        return ast.InList(c[0], items, negated, _pos(meta))

    def between(self, meta: Meta, c: list[Any]) -> ast.Between:
        negated = isinstance(c[1], Token) and c[1].type == "NOT"
        rest = [x for x in c[1:] if not isinstance(x, Token)]
        return ast.Between(c[0], rest[0], rest[1], negated, _pos(meta))

    def binop(self, meta: Meta, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(str(c[1]), c[0], c[2], _pos(meta))

    def neg(self, meta: Meta, c: list[Any]) -> ast.Expr:
        inner = c[0]
        if isinstance(inner, ast.Literal) and isinstance(inner.value, (int, float)) \
                and not isinstance(inner.value, bool):
            return ast.Literal(-inner.value, "-" + inner.text, _pos(meta))
        return ast.Neg(inner, _pos(meta))

    def number(self, meta: Meta, c: list[Any]) -> ast.Literal:
        value = _exact_number(str(c[0]))
        if (isinstance(value, int) and value >= 2**63) or value == float("inf"):
            raise QuerySyntaxError(f"number {_short(str(c[0]))} is out of range", self.text,
                                   c[0].line, c[0].column)
        return ast.Literal(value, str(c[0]), _tok_pos(c[0]))

    def string(self, meta: Meta, c: list[Any]) -> ast.Literal:
        return ast.Literal(str(c[0])[1:-1].replace("''", "'"), str(c[0]), _tok_pos(c[0]))

    def true(self, meta: Meta, c: list[Any]) -> ast.Literal:
        return ast.Literal(True, "TRUE", _tok_pos(c[0]))

    def false(self, meta: Meta, c: list[Any]) -> ast.Literal:
        return ast.Literal(False, "FALSE", _tok_pos(c[0]))

    def null(self, meta: Meta, c: list[Any]) -> ast.Literal:
        return ast.Literal(None, "NULL", _tok_pos(c[0]))

    def column(self, meta: Meta, c: list[Any]) -> ast.Column:
        return ast.Column(str(c[0]), _tok_pos(c[0]))

    def cp(self, meta: Meta, c: list[Any]) -> ast.CP:
        return ast.CP(c[0], c[1], c[2], _pos(meta))

    def area(self, meta: Meta, c: list[Any]) -> ast.Area:
        return ast.Area(c[0], _pos(meta))

    def count_star(self, meta: Meta, c: list[Any]) -> ast.Aggregate:
        return ast.Aggregate("count", None, _pos(meta))

    def agg_call(self, meta: Meta, c: list[Any]) -> ast.Aggregate:
        return ast.Aggregate(str(c[0]).lower(), c[1], _pos(meta))

    def mask_plain(self, meta: Meta, c: list[Any]) -> ast.MaskRef:
        return ast.MaskRef(None, _pos(meta))

    def mask_agg(self, meta: Meta, c: list[Any]) -> ast.MaskRef:
        return ast.MaskRef(str(c[0]).lower(), _pos(meta))

    def roi_full(self, meta: Meta, c: list[Any]) -> ast.FullRoi:
        return ast.FullRoi(_pos(meta))

    def roi_box(self, meta: Meta, c: list[Any]) -> ast.BoxRoi:
        return ast.BoxRoi(c[0], c[1], c[2], c[3], _pos(meta))

    def roi_column(self, meta: Meta, c: list[Any]) -> ast.ColumnRoi:
        return ast.ColumnRoi(str(c[0]), _pos(meta))

    def signed_int(self, meta: Meta, c: list[Any]) -> int:
        value = _small_int(c[-1], self.text, "box coordinate")
        return value if len(c) == 1 and not self._has_minus(meta) else -value

    def range(self, meta: Meta, c: list[Any]) -> ast.Range:
        lo_closed = str(c[0]) == "["
        hi_closed = str(c[-1]) == "]"
        return ast.Range(c[1], lo_closed, c[2], hi_closed, _pos(meta))

    def range_end(self, meta: Meta, c: list[Any]) -> str:
        if c[-1].type != "INF" and not _exponent_ok(str(c[-1])):
            raise QuerySyntaxError(f"number {_short(str(c[-1]))} is out of range", self.text,
                                   c[-1].line, c[-1].column)
        text = str(c[-1]).lower()
        return ("-" if self._has_minus(meta) else "") + text





STATEMENTS = (ast.Select, ast.Explain, ast.Delete, ast.Update, ast.AddColumn, ast.DropColumn)


def parse(text: str) -> ast.Statement:
    """Parse one statement, raising ``QuerySyntaxError`` with its position on bad input."""
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a query is a string, got {type(text).__name__}")
    if len(text) <= CACHED_TEXT:
        return _parse_cached(text)
    return _statement(text)


# Exploration repeats statements (and benchmarks do): parsing takes about as long as a
# selective query's bounds, and the AST is immutable, so recent statements are kept.
CACHED_TEXT = 4096


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> ast.Statement:
    return _statement(text)


def _statement(text: str) -> ast.Statement:
    result = _parse(text)
    assert isinstance(result, STATEMENTS)
    return result


def parse_range_text(text: str) -> ast.Range:
    """Parse a range written on its own, as in CP: ``'(0.6, 1.0]'``, ``'[0, inf)'``."""
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a range is a string, got {type(text).__name__}")
    result = _parse(text, start="range")
    assert isinstance(result, ast.Range)
    return result


def _parse(text: str, start: str = "start") -> ast.Statement | ast.Range:
    _check_unicode(text)
    try:
        tree = _parser().parse(text, start=start)
    except UnexpectedInput as e:
        raise _syntax_error(text, e) from None
    _check_depth(tree, text)
    try:
        node = _ToAst(text, _minus_signs(tree, text)).transform(tree)
        assert isinstance(node, (*STATEMENTS, ast.Range))
        return node
    except VisitError as e:
        if isinstance(e.orig_exc, QuerySyntaxError):
            raise e.orig_exc from None
        raise


def _check_unicode(text: str) -> None:
    """Lone surrogates (possible in Python strings) are not text: refuse them here, located."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        column = e.start - (text.rfind("\n", 0, e.start) + 1) + 1
        raise QuerySyntaxError(f"the query holds a character that is not valid Unicode "
                               f"(U+{ord(text[e.start]):04X})", text, line, column) from None


def _check_depth(tree: Tree[Token], text: str) -> None:
    """Refuse trees deeper than ``MAX_TREE_DEPTH`` (walked without recursion), located at
    the first node beyond the limit."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            meta = node.meta
            line, column = (1, 1) if meta.empty else (meta.line, meta.column)
            raise QuerySyntaxError(f"the query nests too deeply (more than {MAX_TREE_DEPTH} "
                                   "levels of parentheses, operators, NOT or signs)", text,
                                   line, column)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


def _minus_signs(tree: Tree[Token], text: str) -> set[tuple[int, int]]:
    """Where (line, column) a signed integer or range end starts with '-': anonymous '-'
    tokens are filtered out of the tree, so the sign is read from the text."""
    return {(sub.meta.line, sub.meta.column) for sub in tree.iter_subtrees()
            if sub.data in ("signed_int", "range_end") and not sub.meta.empty
            and text[_offset(text, sub.meta.line, sub.meta.column)] == "-"}


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[:line - 1]) + column - 1


def _syntax_error(text: str, e: UnexpectedInput) -> QuerySyntaxError:
    if isinstance(e, UnexpectedEOF):
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        return QuerySyntaxError(f"unexpected end of query; expected {_readable(e.expected)}",
                                text, line, col)
    if isinstance(e, UnexpectedToken):
        if e.token.type == "$END":
            lines = text.rstrip().split("\n")
            line, col = len(lines), len(lines[-1]) + 1
            return QuerySyntaxError(f"unexpected end of query; expected "
                                    f"{_readable(e.expected)}", text, line, col)
        return _unknown_function(text, e.token) or QuerySyntaxError(
            f"unexpected {str(e.token)!r}; expected {_readable(e.expected)}", text, e.line,
            e.column)
    if isinstance(e, UnexpectedCharacters):
        at = e.pos_in_stream or 0
        ch = text[at] if at < len(text) else ""
        hint = _double_quote_hint(text, at) if ch == '"' else ""
        return QuerySyntaxError(f"unexpected character {ch!r}{hint}", text, e.line, e.column)
    return QuerySyntaxError(str(e), text, getattr(e, "line", None), getattr(e, "column", None))


# A function's terminal matches its name only before '(': `_CP.2: /cp(?=\s*\()/i`.
_FUNCTION_PATTERN = re.compile(r"^\(?([a-z_|]+)\)?\(\?=")


@cache
def function_names() -> tuple[str, ...]:
    """The language's function names, lower case, from the grammar's terminals."""
    names: set[str] = set()
    for terminal in _parser().terminals:
        m = _FUNCTION_PATTERN.match(str(terminal.pattern.value))
        if m:
            names.update(m.group(1).split("|"))
    return tuple(sorted(names))


def _unknown_function(text: str, token: Token) -> QuerySyntaxError | None:
    """A name directly followed by an unexpected '(' is a call of a function that does not
    exist (every function's name followed by '(' is a token of its own): say so, with the
    closest function names, located at the name."""
    if str(token) != "(" or token.start_pos is None:
        return None
    try:
        before = list(_parser().lex(text[:token.start_pos]))
    except UnexpectedInput:
        return None
    if not before or before[-1].type != "NAME" or \
            text[before[-1].end_pos:token.start_pos].strip() or \
            (len(before) > 1 and before[-2].type in ("_FROM", "_AS")):  # a table, an alias
        return None
    name = before[-1]
    known = function_names()
    close = difflib.get_close_matches(str(name).lower(), known, n=3)
    hint = (f"did you mean {_alternatives([c.upper() for c in close])}?" if close else
            f"the functions are {', '.join(k.upper() for k in known)}")
    return QuerySyntaxError(f"unknown function {str(name)!r}; {hint}", text, name.line,
                            name.column)


def _alternatives(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _double_quote_hint(text: str, at: int) -> str:
    """For a '"' where a string may have been meant: how to write it in single quotes."""
    end = text.find('"', at + 1)
    if end < 0 or "\n" in text[at + 1:end]:
        return "; strings take single quotes, as in 'text'"
    inner = text[at + 1:end].replace("'", "''")
    return f"; strings take single quotes: '{inner}'"
