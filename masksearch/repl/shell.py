"""The shell's state and its handling of statements and dot-commands, independent of the
line editor (so scripts, ``.read`` and tests drive exactly what the terminal drives)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from ..api import Database
from ..errors import MaskSearchError, QueryCancelled
from ..format import format_result
from .commands import run_command
from .session import Settings, ShellExit
from .statements import split_input

if TYPE_CHECKING:
    from tqdm import tqdm

TABLE_ROWS = 40            # rows a table shows on the terminal before "... more rows"
PROGRESS_FROM = 200        # verification steps of this many masks show a progress bar


@dataclass
class Shell:
    """Runs shell input against ``db``; results go to ``out``, messages to ``err``."""

    db: Database
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    progress: bool = False          # show progress bars (on a terminal)
    settings: Settings = field(default_factory=Settings)
    failures: int = 0               # statements and commands that failed (script exit code)

    def run(self, text: str) -> str:
        """Run every complete piece of ``text``; returns the unfinished rest.

        Raises ``ShellExit`` on ``.quit``; errors are printed and the next piece runs.
        """
        pieces, rest = split_input(text)
        for piece in pieces:
            try:
                if piece.dot:
                    run_command(self, piece.text)
                else:
                    self.run_statement(piece.text)
            except ShellExit:
                raise
            except QueryCancelled as e:
                self.failures += 1
                self.message(f"{e}")
            except KeyboardInterrupt:
                self.failures += 1
                self.message("query cancelled")
            except MaskSearchError as e:
                self.failures += 1
                self.message(f"error: {e}")
        return rest

    def close(self) -> None:
        """Close the ``.output`` file, if any (what it holds is flushed)."""
        if self.settings.output is not None:
            self.settings.output.close()
            self.settings.output = self.settings.output_name = None

    def message(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def emit(self, text: str) -> None:
        """Result text: to the ``.output`` file if one is set, else the terminal."""
        target = self.settings.output or self.out
        print(text, file=target, flush=True)

    def run_statement(self, sql: str) -> None:
        for notice in self.db.notices(sql):
            self.message(f"notice: {notice}")
        bar = _ProgressBar(self.err) if self.progress else None
        start = time.perf_counter()
        try:
            result = self.db.query(sql, use_index=self.settings.use_index, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        self.settings.last = result
        to_terminal = self.settings.output is None
        limit = TABLE_ROWS if to_terminal else None
        table = result.to_arrow()
        self.emit(format_result(table, self.settings.mode, limit))
        if self.settings.mode in ("table", "markdown") and to_terminal and \
                table.num_rows > TABLE_ROWS:
            self.message("(all rows: .mode csv, .mode json or .output FILE)")
        n = len(result)
        summary = f"{n} row{'s' if n != 1 else ''}"
        if self.settings.timer:
            summary += f" in {seconds * 1e3:.1f} ms"
            s = result.stats
            if s.verified:
                summary += f" ({s.verified} of {s.masks_total} masks read)"
        self.message(summary)


class _ProgressBar:
    """A tqdm bar for verification steps big enough to take a while."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None or self.bar.total != total:
            self.close()
            if total < PROGRESS_FROM:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="verifying", unit="mask", file=self.stream,
                            leave=False, dynamic_ncols=True, delay=0.2)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
