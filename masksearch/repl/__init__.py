"""The interactive shell: ``masksearch repl PATH`` (or ``masksearch PATH``)."""

from __future__ import annotations

import sys

from ..api import Database
from .session import ShellExit
from .shell import Shell


def main(db: Database) -> int:
    """Interactive on a terminal; otherwise run the statements read from stdin."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from .editor import run_interactive

        return run_interactive(Shell(db, progress=True))
    shell = Shell(db)
    try:
        rest = shell.run(sys.stdin.read())
    except ShellExit:
        return 1 if shell.failures else 0
    finally:
        shell.close()
    if rest.strip():
        shell.message(f"error: input ends inside a statement with no ';': {rest.strip()[:60]!r}")
        return 1
    return 1 if shell.failures else 0
