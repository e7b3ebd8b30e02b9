"""Split shell input into statements: SQL ends at a ``;`` outside strings and comments;
a dot-command is one line."""

from __future__ import annotations

from dataclasses import dataclass


def _scan(text: str) -> list[int]:
    """Offsets of the ``;`` characters of ``text`` that end statements."""
    ends = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":                       # a string: '' is an escaped quote
            i += 1
            while i < n:
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
        elif c == "-" and text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        elif c == ";":
            ends.append(i)
        i += 1
    return ends


def _blank(text: str) -> bool:
    """Only whitespace and ``--`` comments."""
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


@dataclass(frozen=True)
class Piece:
    """A complete unit of input: a SQL statement (with its ``;``) or a dot-command line."""

    text: str
    dot: bool


def split_input(text: str) -> tuple[list[Piece], str]:
    """Complete pieces of ``text`` in order, and the unfinished rest (a statement with no
    ``;`` yet)."""
    pieces: list[Piece] = []
    rest = text
    while True:
        stripped = rest.lstrip()
        while stripped.startswith("--"):      # leading comment lines belong to no piece
            stripped = stripped.partition("\n")[2].lstrip()
        if not stripped:
            return pieces, ""
        if stripped.startswith("."):
            line, _, rest = stripped.partition("\n")
            pieces.append(Piece(line.strip(), True))
            continue
        rest = stripped
        ends = _scan(rest)
        if not ends:
            return pieces, ("" if _blank(rest) else rest)
        stmt, rest = rest[:ends[0] + 1], rest[ends[0] + 1:]
        if not _blank(stmt[:-1]):
            pieces.append(Piece(stmt.strip(), False))


def is_complete(text: str) -> bool:
    """Whether the editor should run ``text`` on Enter rather than open a new line."""
    _pieces, rest = split_input(text)
    return not rest
