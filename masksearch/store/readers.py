"""Reader registrations: which committed states open connections may still read.

A statement that replaces files (DELETE, UPDATE, compaction) retires the old ones; a query
that started before it keeps reading its own snapshot, so retired files are removed only
when no reader still pins a manifest version older than the commit that retired them.

Each open connection owns one file ``readers/<pid>-<random>`` holding the oldest manifest
version its snapshots may read, and keeps an exclusive ``flock`` on it while open; the
kernel drops the lock when the process dies, so a writer can tell a live reader's pin from a
dead one's (and removes the latter). The file exists, empty (pinning everything), before
the connection reads its first manifest, and a pin only rises to versions already read, so
a writer that does not see a reader's pin cannot retire anything that reader will read.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

DIRECTORY = "readers"


class ReaderPin:
    """This connection's registration. Best effort where the folder cannot be written (a
    read-only file system): then nothing is pinned, and nothing can be replaced either."""

    def __init__(self, root: Path):
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.path = root / DIRECTORY / name
        self.version: int | None = None
        self._fd: int | None = None
        # Locked under a hidden name, then renamed in: a writer never sees it unlocked (it
        # would take it for a dead reader's).
        new = root / DIRECTORY / f".new-{name}"
        try:
            self.path.parent.mkdir(exist_ok=True)
            fd = os.open(new, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.rename(new, self.path)
        except OSError:
            os.close(fd)
            new.unlink(missing_ok=True)
            return
        self._fd = fd

    def set(self, version: int) -> None:
        """Pin ``version``: no file a snapshot of it (or a later one) reads is removed."""
        if self._fd is None or version == self.version:
            return
        data = str(version).encode()
        os.pwrite(self._fd, data.ljust(20), 0)
        self.version = version

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def oldest_pinned(root: Path) -> int | None:
    """The oldest version a live reader pins (None: no reader), removing dead readers'
    files. Call with the writer lock held."""
    oldest: int | None = None
    directory = root / DIRECTORY
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.name.startswith(".new-"):
            _remove_if_dead(path)
            continue
        version = _live_pin(path)
        if version is not None:
            oldest = version if oldest is None else min(oldest, version)
    return oldest


def _live_pin(path: Path) -> int | None:
    """The version ``path`` pins if its owner is alive; a dead owner's file is removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:   # its owner holds it: a live reader
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0   # not written yet: pins everything
        path.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)


def _remove_if_dead(path: Path) -> None:
    """A registration its process never renamed in: removed once that process is gone."""
    try:
        os.kill(int(path.name.split("-")[1]), 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
    except (ValueError, IndexError, PermissionError, OverflowError):
        pass
