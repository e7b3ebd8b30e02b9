"""The language's words, read from the grammar so editors (completion, highlighting) never
drift from the parser: keywords, function names and the other reserved words."""

from __future__ import annotations

import re
from functools import cache

from .parser import grammar_text

# A keyword terminal: `_SELECT.2: /select\b/i`; a function: `_CP.2: /cp(?=\s*\()/i` or
# `AGG_NAME.2: /(sum|avg|min|max)(?=\s*\()/i`.
_TERMINAL = re.compile(r"^_?[A-Z_]+\.2:\s*/\(?([a-z_|]+)\)?(\\b|\(\?=)", re.M)


@cache
def _words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    keywords: set[str] = set()
    functions: set[str] = set()
    for m in _TERMINAL.finditer(grammar_text()):
        (functions if m.group(2).startswith("(") else keywords).update(m.group(1).split("|"))
    return tuple(sorted(keywords)), tuple(sorted(functions))


def keywords() -> tuple[str, ...]:
    """Reserved words other than functions, lower case (``select``, ``mask``, ``full``...)."""
    return _words()[0]


def functions() -> tuple[str, ...]:
    """Function names, lower case (``cp``, ``area``, ``box``, ``count``, ``intersect``...)."""
    return _words()[1]
