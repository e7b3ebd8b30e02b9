"""The interactive line editor (prompt_toolkit): history across sessions, multi-line
statements ended by ';', highlighting, completion, and Ctrl-C / Ctrl-D handling."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from ..format import FORMATS
from .commands import COMMANDS
from .session import ShellExit
from .shell import Shell
from .statements import is_complete

PROMPT = "masksearch> "
CONTINUATION = "        ...> "

STYLE = Style.from_dict({
    "keyword": "bold ansiblue", "function": "ansimagenta", "number": "ansicyan",
    "string": "ansigreen", "comment": "italic ansibrightblack", "command": "bold ansiyellow",
    "bracket": "bold",
})

_TOKEN = re.compile(r"""(?P<comment>--[^\n]*)|(?P<string>'(?:[^']|'')*'?)
    |(?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<bracket>[\[\]()])|(?P<other>\s+|.)""", re.X)


def history_path() -> Path:
    """``$MASKSEARCH_HISTORY``, else ``~/.masksearch_history``."""
    return Path(os.environ.get("MASKSEARCH_HISTORY") or Path.home() / ".masksearch_history")


@cache
def _vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """The language's keywords and functions, read from the grammar (and lark loaded) when
    first needed: not before the first prompt."""
    from ..lang.vocabulary import functions, keywords

    return frozenset(keywords()), frozenset(functions())


class QueryLexer(Lexer):
    """Highlights keywords, functions, numbers, strings, comments and dot-commands."""

    def lex_document(self, document: Document) -> Callable[[int], list]:
        lines = document.lines

        def line_tokens(i: int) -> list:
            line = lines[i]
            if line.lstrip().startswith("."):
                return [("class:command", line)]
            out = []
            for m in _TOKEN.finditer(line):
                kind, text = m.lastgroup, m.group()
                if kind == "word":
                    kws, fns = _vocabulary()
                    low = text.lower()
                    kind = "keyword" if low in kws else "function" if low in fns else ""
                out.append((f"class:{kind}" if kind and kind != "other" else "", text))
            return out

        return line_tokens


class QueryCompleter(Completer):
    """Completes dot-commands at the start of a line, ``.mode`` values, and in statements
    keywords, functions (with their opening parenthesis) and the database's columns."""

    def __init__(self, columns: Callable[[], list[str]]):
        self.columns = columns

    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterator[Completion]:
        line = document.current_line_before_cursor.lstrip()
        if line.startswith("."):
            yield from _command_completions(line)
        else:
            yield from self._word_completions(document.text_before_cursor)

    def _word_completions(self, before: str) -> Iterator[Completion]:
        m = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", before)
        word = m.group() if m else ""
        if not word:
            return
        from ..lang.vocabulary import functions, keywords

        low = word.lower()
        upper = _writes_upper(word, before)
        for name in self.columns():
            if name.lower().startswith(low) and name != word:
                yield Completion(name, -len(word), display_meta="column")
        for kw in keywords():
            if kw.startswith(low):
                yield Completion(kw.upper() if upper else kw, -len(word),
                                 display_meta="keyword")
        for fn in functions():
            if fn.startswith(low):
                text = fn.upper() if upper else fn
                yield Completion(text + "(", -len(word), display=text,
                                 display_meta="function")


def _command_completions(line: str) -> Iterator[Completion]:
    """Dot-command names, and ``.mode``'s values."""
    words = line.split()
    if len(words) <= 1 and not line.endswith(" "):
        for name in COMMANDS:
            if name.startswith(line.lower()):
                yield Completion(name, -len(line))
    elif words[0] == ".mode":
        word = "" if line.endswith(" ") else words[-1]
        for mode in FORMATS:
            if mode.startswith(word.lower()):
                yield Completion(mode, -len(word))


def _writes_upper(word: str, before: str) -> bool:
    """Keywords follow the case the user writes them in: the word's own, else that of the
    statement's first word."""
    if not word.islower():
        return word.isupper()
    first = re.match(r"\s*([A-Za-z]+)", before)
    return bool(first and first.end() < len(before) and first.group(1).isupper())


def _bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("enter")
    def _(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if is_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return kb


def run_interactive(shell: Shell) -> int:
    """Read, run and print until ``.quit`` or Ctrl-D; returns the exit status."""
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_path())), lexer=QueryLexer(),
        completer=QueryCompleter(lambda: list(shell.db.columns())), style=STYLE,
        multiline=True, key_bindings=_bindings(), complete_while_typing=False,
        prompt_continuation=lambda width, line_number, soft: CONTINUATION[-width:],
        enable_history_search=True)
    shell.message(f"masksearch: {shell.db.mask_count()} masks in {shell.db.path}. "
                  "Statements end with ';'. .help for help, Ctrl-D to leave.")
    while True:
        try:
            text = session.prompt(PROMPT)
        except KeyboardInterrupt:      # Ctrl-C while typing: drop the line, keep the shell
            continue
        except EOFError:               # Ctrl-D
            break
        try:
            rest = shell.run(text)
        except ShellExit:
            break
        if rest.strip():               # e.g. a statement followed by an unfinished one
            shell.message(f"error: unfinished statement dropped: {rest.strip()[:60]!r}")
    shell.close()
    sys.stderr.flush()
    return 0
