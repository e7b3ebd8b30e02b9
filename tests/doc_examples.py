"""Extract the fenced code blocks of a Markdown document and run them as a reader would.

Used by ``tests/test_docs.py``, whose docstring states the rules. Everything that fails says
which document, which block (counting every fenced block from 1) and which line.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^( {0,3})(`{3,})\s*([\w+-]*)[^`]*$")
_MARKER = re.compile(r"^<!--\s*doctest:\s*(.*?)\s*-->$")
_EXIT = re.compile(r"#[^'\"]*\bexit code (\d+)\b[^'\"]*$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
PROMPT = "masksearch> "
CONTINUATION = "...> "
BANNER = "masksearch: "
MARKERS = ("output", "error", "skip")


class DocFailure(AssertionError):
    """An example of a document did not run as the document says."""


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    doc: str        # path relative to the repository root
    number: int     # 1-based, counting every fenced block of the document
    line: int       # line of the opening fence, 1-based
    lang: str       # the info string's first word, lower case ("" when absent)
    text: str       # the content, without the fences
    marker: str     # the word of a ``<!-- doctest: WORD -->`` line just above the fence

    def where(self, offset: int | None = None) -> str:
        """``doc, block n, line l``; ``offset`` is a 0-based line within the content."""
        at = self.line if offset is None else self.line + 1 + offset
        return f"{self.doc}, block {self.number}, line {at}"


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of the Markdown file ``path``, in order."""
    doc = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence)
                                      and set(lines[i].strip()) == {"`"}):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        if i == len(lines):
            raise DocFailure(f"{doc}, line {start + 1}: the code block is never closed")
        i += 1
        marker = ""
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (mm := _MARKER.match(lines[k].strip())):
            marker = mm.group(1)
            if marker not in MARKERS and not marker.startswith("exit"):
                raise DocFailure(f"{doc}, line {k + 1}: unknown doctest marker {marker!r} "
                                 f"(known: {', '.join(MARKERS)})")
        blocks.append(Block(doc, len(blocks) + 1, start + 1, lang, "\n".join(body), marker))
    return blocks


# --- output comparison -------------------------------------------------------------------
def _pattern(expected: str) -> re.Pattern:
    """``...`` in a line matches any text; a line that is only ``...`` any lines."""
    parts = []
    for line in _tidy(expected).split("\n"):
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(_line_pattern(line).pattern + r"\n")
    return re.compile("".join(parts))


def _tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _line_pattern(line: str) -> re.Pattern:
    return re.compile(r"[^\n]*?".join(re.escape(p) for p in line.split("...")))


def check_output(expected: str, actual: str, where: str) -> None:
    """Fail unless ``actual`` is what ``expected`` shows (see ``_pattern``)."""
    if _pattern(expected).fullmatch(_tidy(actual) + "\n"):
        return
    shown, got = _tidy(expected).splitlines(), _tidy(actual).splitlines()
    # For the diff, a line with "..." that matches the actual line beside it is that line.
    shown = [got[i] if "..." in line and i < len(got) and _line_pattern(line).fullmatch(got[i])
             else line for i, line in enumerate(shown)]
    diff = "\n".join(difflib.unified_diff(shown, got, "shown in the doc", "actual output",
                                          lineterm=""))
    raise DocFailure(f"{where}: the output differs from what the doc shows\n{diff}")


# --- SQL ---------------------------------------------------------------------------------
def split_statements(text: str) -> list[tuple[str, int]]:
    """Statements (ending at ``;`` outside strings and ``--`` comments, or at the end) with
    the 0-based line of their first line; comment lines before a statement are left out."""
    out: list[tuple[str, int]] = []
    start = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if start is None:
            if c.isspace():
                i += 1
                continue
            if text.startswith("--", i):
                nl = text.find("\n", i)
                i = n if nl < 0 else nl
                continue
            start = i
        if c == "'":
            i += 1
            while i < n and not (text[i] == "'" and not text.startswith("''", i)):
                i += 2 if text.startswith("''", i) else 1
        elif text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        elif c == ";":
            out.append((text[start:i + 1], text.count("\n", 0, start)))
            start = None
        i += 1
    if start is not None and text[start:].strip():
        out.append((text[start:].rstrip(), text.count("\n", 0, start)))
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# --- the command line --------------------------------------------------------------------
def _command(line: str) -> tuple[list[str], int] | None:
    """The arguments of a ``masksearch ...`` line and the exit code it should give."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:].strip()
    if not (line == "masksearch" or line.startswith("masksearch ")):
        return None
    m = _EXIT.search(line)
    return shlex.split(line, comments=True), int(m.group(1)) if m else 0


def run_cli(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    """``masksearch ARGS`` as a subprocess of this Python, stdout and stderr merged in the
    order they were written, ``< FILE`` as stdin."""
    if "<" in args:
        at = args.index("<")
        stdin = (cwd / args[at + 1]).read_text(encoding="utf-8")
        args = args[:at] + args[at + 2:]
    env = dict(os.environ, PYTHONUNBUFFERED="1", MASKSEARCH_HISTORY=str(cwd / ".history"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "masksearch", *args[1:]], cwd=cwd, env=env,
                          input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)


# --- running a document ------------------------------------------------------------------
def needs_database(blocks: list[Block]) -> bool:
    """Whether the blocks query a database: SQL, or a ``masksearch`` command."""
    return any(b.marker != "skip" and (b.lang == "sql" or (
        b.lang in ("sh", "shell", "bash", "console")
        and any(_command(line) for line in b.text.split("\n")))) for b in blocks)


class DocRunner:
    """Runs the blocks of one document in order, in ``workdir``, sharing one namespace."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.namespace: dict = {"__name__": "__doc_example__"}
        self.last: tuple[Block, str] | None = None   # a block run and what it printed

    def run(self, blocks: list[Block]) -> int:
        """Run every block; returns how many ran or were compared."""
        done = 0
        for block in blocks:
            if block.marker == "skip":
                continue
            handler = {"python": self.python, "py": self.python, "sql": self.sql,
                       "sh": self.sh, "shell": self.sh, "bash": self.sh,
                       "console": self.console, "text": self.text}.get(block.lang)
            if handler is not None and handler(block):
                done += 1
        return done

    def python(self, block: Block) -> bool:
        # Blank lines first, so that tracebacks give the line numbers of the document.
        code = compile("\n" * block.line + block.text, str(ROOT / block.doc), "exec")
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, self.namespace)
        except Exception as e:
            raise DocFailure(f"{block.where()}: the Python block raised "
                             f"{type(e).__name__}: {e}") from e
        self.last = (block, out.getvalue())
        return True

    def database(self, block: Block):
        import masksearch as ms

        db = self.namespace.get("db")
        if not isinstance(db, ms.Database):
            raise DocFailure(f"{block.where()}: SQL runs against the variable db, which the "
                             "document's Python blocks must set to a masksearch Database")
        return db

    def sql(self, block: Block) -> bool:
        import masksearch as ms
        from masksearch.format import format_table

        db = self.database(block)
        shown = []
        statements = split_statements(block.text)
        if not statements:
            raise DocFailure(f"{block.where()}: an SQL block without a statement")
        for stmt, offset in statements:
            where = block.where(offset)
            try:
                result = db.query(stmt)
            except ms.MaskSearchError as e:
                if block.marker != "error":
                    raise DocFailure(f"{where}: {type(e).__name__}: {e}") from e
                shown.append(f"error: {e}")
                continue
            if block.marker == "error":
                raise DocFailure(f"{where}: the block is marked error, but the statement ran")
            # EXPLAIN shows the plan; a statement that changes data runs once (the plain
            # SELECTs after it check the state it left, both ways).
            if not re.match(r"\s*(explain|delete|update|alter)\b", stmt, re.I):
                brute = db.query(stmt, use_index=False)
                if not _same(result.to_pylist(), brute.to_pylist()):
                    raise DocFailure(f"{where}: the result with the index differs from "
                                     "use_index=False")
            shown.append(format_table(result.to_arrow(), max_rows=None))
        self.last = (block, "\n\n".join(shown))
        return True

    def sh(self, block: Block) -> bool:
        lines = block.text.split("\n")
        ran = False
        i = 0
        while i < len(lines):
            offset, line = i, lines[i]
            i += 1
            while line.endswith("\\") and i < len(lines):
                line = line[:-1] + " " + lines[i].strip()
                i += 1
            stdin = ""
            heredoc = _HEREDOC.search(line)
            if heredoc and _command(line):
                body = []
                while i < len(lines) and lines[i].strip() != heredoc.group(2):
                    body.append(lines[i])
                    i += 1
                i += 1
                stdin = "\n".join(body) + "\n"
                line = line[:heredoc.start()] + line[heredoc.end():]
            cmd = _command(line)
            if cmd is None:
                continue
            args, code = cmd
            proc = run_cli(args, self.workdir, stdin)
            if proc.returncode != code:
                raise DocFailure(f"{block.where(offset)}: {' '.join(args)} exited with "
                                 f"{proc.returncode}, not {code}:\n{proc.stdout}")
            self.last = (block, proc.stdout)
            ran = True
        return ran

    def console(self, block: Block) -> bool:
        lines = block.text.split("\n")
        starts = [k for k, line in enumerate(lines) if line.startswith("$ ")]
        if not starts or starts[0] != 0:
            raise DocFailure(f"{block.where()}: a console block starts with a '$ ' command")
        ran = False
        for k, end in zip(starts, [*starts[1:], len(lines)], strict=True):
            cmd = _command(lines[k])
            if cmd is None:
                continue
            args, code = cmd
            rest = lines[k + 1:end]
            typed = [line for line in rest if line.startswith(PROMPT)
                     or line.lstrip().startswith(CONTINUATION)]
            if typed:      # a shell session: run what was typed, compare the rest
                stdin = "\n".join(line.split(PROMPT, 1)[1] if line.startswith(PROMPT)
                                  else line.lstrip()[len(CONTINUATION):] for line in typed)
                shown = [line for line in rest if line not in typed]
                if shown and shown[0].startswith(BANNER):
                    shown = shown[1:]
                proc = run_cli(args, self.workdir, stdin + "\n")
            else:
                shown = rest
                proc = run_cli(args, self.workdir)
                if proc.returncode != code:
                    raise DocFailure(f"{block.where(k)}: {lines[k][2:]} exited with "
                                     f"{proc.returncode}, not {code}:\n{proc.stdout}")
            if "\n".join(shown).strip():
                check_output("\n".join(shown), proc.stdout, block.where(k))
            ran = True
        return ran

    def text(self, block: Block) -> bool:
        if block.marker != "output":
            return False
        if self.last is None:
            raise DocFailure(f"{block.where()}: an output block with no example before it")
        before, printed = self.last
        check_output(block.text, printed, f"{block.where()} (output of block {before.number})")
        self.last = None
        return True
