"""What the shell and its dot-commands share: the settings a session changes, the exit
signal, and the part of the shell a dot-command may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

from ..api import Database

if TYPE_CHECKING:
    from ..result import Result


class ShellExit(Exception):
    """``.quit``: leave the shell."""


@dataclass
class Settings:
    mode: str = "table"
    timer: bool = True
    use_index: bool = True
    output: TextIO | None = None   # .output FILE; None is the terminal
    output_name: str | None = None
    last: Result | None = None     # the last statement's result (.gallery)


class Session(Protocol):
    """The shell as dot-commands see it."""

    db: Database
    settings: Settings

    def run(self, text: str) -> str:
        """Run statements and commands; returns the unfinished rest."""
        ...

    def close(self) -> None:
        """Close the ``.output`` file, if any."""
        ...

    def message(self, text: str) -> None:
        """A message for the user (stderr)."""
        ...

    def emit(self, text: str) -> None:
        """Result text (stdout, or the ``.output`` file)."""
        ...
