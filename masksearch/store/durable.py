"""Durable file operations: write whole, fsync, rename into place, fsync the folder.

Each step passes a crash point (``faults.point``), so crash tests can stop a writer there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import faults

if TYPE_CHECKING:
    from typing_extensions import Buffer


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes renames and creations in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    faults.point(f"fsync {path.name}")


def write_bytes(path: Path, data: Buffer) -> None:
    """Write ``data`` to a new file and fsync it (half first: a crash point sits between)."""
    view = memoryview(data).cast("B")
    with open(path, "wb") as f:
        half = len(view) // 2
        f.write(view[:half])
        f.flush()
        faults.point(f"write half {path.name}")
        f.write(view[half:])
        f.flush()
        os.fsync(f.fileno())
    faults.point(f"write {path.name}")


def replace(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` and make the rename durable."""
    os.replace(src, dst)
    faults.point(f"rename {dst.name}")
    fsync_path(dst.parent)


def write_atomic(path: Path, data: Buffer, tmp_suffix: str | None = None) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a part."""
    tmp = path.with_name(path.name + (tmp_suffix or f".tmp-{os.getpid()}"))
    try:
        write_bytes(tmp, data)
        replace(tmp, path)
    except BaseException:  # an error, or Ctrl-C in a query writing a CHI: leave no trace
        tmp.unlink(missing_ok=True)
        raise


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    faults.point(f"remove {path.name}")


def remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    faults.point(f"remove {path.name}")
