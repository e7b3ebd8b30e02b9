"""Drive a program in a pseudo-terminal and read its screen, as a person would.

``pexpect`` runs the program on a pty; ``pyte`` emulates the terminal, so tests read the
rendered screen (what a user sees), not raw escape sequences.
"""

from __future__ import annotations

import os
import time

import pexpect
import pyte


class _Screen(pyte.Screen):
    """A screen that answers the program's terminal queries (cursor position reports)."""

    def __init__(self, columns: int, lines: int, reply):
        super().__init__(columns, lines)
        self._reply = reply

    def write_process_input(self, data: str) -> None:
        self._reply(data)


class Terminal:
    """A program running in a ``columns`` x ``lines`` terminal."""

    def __init__(self, argv: list[str], env: dict, columns: int = 140, lines: int = 50,
                 cwd: str | None = None):
        self.child = pexpect.spawn(argv[0], argv[1:], env={**os.environ, **env,
                                                            "TERM": "xterm"},
                                   dimensions=(lines, columns), encoding="utf-8", cwd=cwd,
                                   codec_errors="replace")
        self.screen = _Screen(columns, lines, self.child.send)
        self.stream = pyte.Stream(self.screen)
        self.history: list[str] = []    # every line that scrolled through, for long output

    def _pump(self, timeout: float) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            return
        self.stream.feed(data)

    def text(self) -> str:
        """The screen as text, trailing blanks stripped."""
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def wait_for(self, needle: str, timeout: float = 120.0) -> str:
        """Read output until ``needle`` appears on the screen; return the screen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._pump(0.1)
            screen = self.text()
            if needle in screen:
                return screen
            if not self.child.isalive():
                self._pump(0.1)
                screen = self.text()
                if needle in screen:
                    return screen
                break
        state = "running" if self.child.isalive() else f"exited ({self.child.exitstatus})"
        raise AssertionError(f"{needle!r} not on the screen after {timeout} s; the program "
                             f"is {state}. Screen:\n{self.text()}")

    def settle(self, quiet: float = 0.5, timeout: float = 30.0) -> str:
        """Read until nothing new arrives for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self._pump(quiet)
            screen = self.text()
            if screen == last:
                return screen
            last = screen
        return self.text()

    def type(self, keys: str) -> None:
        """Type ``keys`` (``\\r`` is Enter)."""
        self.child.send(keys)

    def ctrl(self, key: str) -> None:
        self.child.sendcontrol(key)

    def clear(self) -> None:
        """Forget what is on the screen (Ctrl-L also clears the real one)."""
        self.ctrl("l")
        self.settle(0.3)

    def exit_status(self, timeout: float = 30.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self._pump(0.1)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
