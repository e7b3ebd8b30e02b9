"""Dot-commands: ``.help``, ``.schema``, ``.info``, ``.timer``, ``.mode``, ``.output``,
``.read``, ``.gallery``, ``.quit``."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from ..errors import MaskSearchError
from ..format import FORMATS, format_info
from .session import Session, ShellExit


class CommandError(MaskSearchError):
    """A dot-command that cannot run (unknown command, bad argument, unreadable file)."""


def _help(shell: Session, args: list[str]) -> None:
    width = max(len(usage) for usage, _, _ in COMMANDS.values())
    lines = [f"{usage.ljust(width)}  {text}" for usage, text, _ in COMMANDS.values()]
    lines += ["", "Statements end with ';' and may span lines; Ctrl-C cancels a running "
              "query, Ctrl-D leaves.",
              "Example: SELECT mask_id, CP(mask, full, (0.5, 1.0]) AS c FROM masks "
              "ORDER BY c DESC LIMIT 5;"]
    shell.message("\n".join(lines))


def _schema(shell: Session, args: list[str]) -> None:
    cols = shell.db.columns()
    width = max(len(c) for c in cols)
    lines = ["masks (alias MasksDatabaseView): one row per mask"]
    lines += [f"  {name.ljust(width)}  {kind}" for name, kind in cols.items()]
    lines.append(f"  {'mask'.ljust(width)}  pixels (only inside CP and intersect/union/mean)")
    shell.emit("\n".join(lines))


def _info(shell: Session, args: list[str]) -> None:
    shell.emit(format_info(shell.db.info()))


def _on_off(name: str, args: list[str]) -> bool:
    if len(args) != 1 or args[0].lower() not in ("on", "off"):
        raise CommandError(f".{name} takes on or off")
    return args[0].lower() == "on"


def _timer(shell: Session, args: list[str]) -> None:
    shell.settings.timer = _on_off("timer", args)


def _index(shell: Session, args: list[str]) -> None:
    shell.settings.use_index = _on_off("index", args)


def _mode(shell: Session, args: list[str]) -> None:
    if not args:
        shell.message(f"mode: {shell.settings.mode}")
        return
    if len(args) != 1 or args[0].lower() not in FORMATS:
        raise CommandError(f".mode takes one of: {', '.join(FORMATS)}")
    shell.settings.mode = args[0].lower()


def _output(shell: Session, args: list[str]) -> None:
    if len(args) > 1:
        raise CommandError(".output takes one file name (none: back to the terminal)")
    if not args or args[0] in ("stdout", "-"):
        shell.close()
        return
    try:
        # Kept open until .output changes it or the shell closes it.
        handle = open(args[0], "w", encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise CommandError(f".output {args[0]}: {e.strerror}") from None
    shell.close()
    shell.settings.output, shell.settings.output_name = handle, args[0]
    shell.message(f"results go to {args[0]} (.output alone to go back)")


def _read(shell: Session, args: list[str]) -> None:
    if len(args) != 1:
        raise CommandError(".read takes one file name")
    try:
        text = Path(args[0]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f".read {args[0]}: {getattr(e, 'strerror', None) or e}") from None
    rest = shell.run(text)
    if rest.strip():
        shell.message(f"error: {args[0]} ends inside a statement with no ';': "
                      f"{rest.strip()[:60]!r}")


def _gallery(shell: Session, args: list[str]) -> None:
    if len(args) != 1:
        raise CommandError(".gallery takes one file name")
    if shell.settings.last is None:
        raise CommandError(".gallery: run a statement first; its rows become the pictures")
    try:
        cards = shell.settings.last.save_html(args[0])
    except OSError as e:
        raise CommandError(f".gallery {args[0]}: {e.strerror}") from None
    shell.message(f"wrote {cards} card{'s' if cards != 1 else ''} of the last result to "
                  f"{args[0]}")


def _quit(shell: Session, args: list[str]) -> None:
    shell.close()
    raise ShellExit


Command = Callable[[Session, list[str]], None]
COMMANDS: dict[str, tuple[str, str, Command]] = {
    ".help": (".help", "this list", _help),
    ".schema": (".schema", "the columns of masks and their types", _schema),
    ".info": (".info", "masks, shapes, dtypes, index coverage and sizes", _info),
    ".timer": (".timer on|off", "show each statement's time (default on)", _timer),
    ".index": (".index on|off", "use the index (default on); off reads every mask, for "
               "checks", _index),
    ".mode": (".mode table|csv|json|markdown", "how results are printed", _mode),
    ".output": (".output [FILE]", "send results to FILE; alone: back to the terminal",
                _output),
    ".read": (".read FILE", "run the statements and commands in FILE", _read),
    ".gallery": (".gallery FILE", "the last result as pictures: a self-contained HTML page",
                 _gallery),
    ".quit": (".quit", "leave (also .exit or Ctrl-D)", _quit),
}
ALIASES = {".exit": ".quit", ".q": ".quit", ".h": ".help"}


def run_command(shell: Session, line: str) -> None:
    """Run one dot-command line."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise CommandError(f"{line}: {e}") from None
    name = ALIASES.get(words[0].lower(), words[0].lower())
    if name not in COMMANDS:
        raise CommandError(f"unknown command {words[0]} (.help lists them)")
    COMMANDS[name][2](shell, words[1:])
