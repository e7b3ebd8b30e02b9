"""The files of one folder of a database, wherever the folder is: ``LocalFiles`` (a folder on
this machine) or ``RemoteFiles`` (a prefix on object storage, through a pyarrow file system).

Everything that reads a database (the manifest, segments, overlays, the CHI, cached CHIs)
reads through a ``Files``; the store's writes stay local (``Files.path``), except what a
copy writes to its destination (``write``). Remote reads are counted in a ``Traffic``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from ..errors import StoreError
from .checksum import digest, parse_checked_npz, parse_sealed_json
from .durable import fsync_path, remove_tree, write_atomic, write_bytes
from .location import Location

if TYPE_CHECKING:
    import numpy as np
    import pyarrow.fs as pafs


class Traffic:
    """What one connection read from object storage: requests (whole files, ranged reads,
    listings) and bytes received."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, nbytes: int, requests: int = 1) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += nbytes


class RandomAccess(Protocol):
    """A file read in parts: ``read_at(nbytes, offset)`` as pyarrow's files have it."""

    def size(self) -> int: ...

    def read_at(self, nbytes: int, offset: int) -> pa.Buffer: ...


class Files(ABC):
    """The files directly inside one folder, read whole or in ranges."""

    local: bool

    @property
    @abstractmethod
    def name(self) -> str:
        """The folder's own name (a segment's name, say)."""

    @property
    def path(self) -> Path:
        """The local folder (what writes need); object storage has none."""
        raise StoreError(f"{self.label()}: this needs a database on this machine's disk; "
                         "this one is on object storage")

    @abstractmethod
    def child(self, name: str) -> Files:
        """The files of the folder ``name`` inside this one."""

    @abstractmethod
    def label(self, name: str = "") -> str:
        """Where the file ``name`` is (the folder itself without a name), for messages."""

    @abstractmethod
    def read(self, name: str, *, mapped: bool = False) -> pa.Buffer:
        """The whole file (memory-mapped if ``mapped`` and local); ``FileNotFoundError``
        when it does not exist, ``OSError`` when it cannot be read."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def listing(self) -> dict[str, int]:
        """The files directly inside the folder and their sizes ({} without a folder)."""

    @abstractmethod
    def stat(self, name: str) -> tuple[int, ...]:
        """What changes when the file is replaced (its identity, times, size)."""

    @abstractmethod
    def random_access(self, name: str) -> RandomAccess:
        """The file for reads of parts of it: memory-mapped locally, one ranged request per
        read remotely."""

    # --- a copy's destination -------------------------------------------------------------
    @abstractmethod
    def write(self, name: str, data: pa.Buffer | bytes, *, atomic: bool = False) -> None:
        """Write a whole file (its folder is made as needed): readers never see a part of
        it when ``atomic`` (objects of object storage are always written whole)."""

    @abstractmethod
    def sync(self) -> None:
        """Make the files written into this folder durable (local: fsync the folder)."""

    @abstractmethod
    def remove_all(self) -> None:
        """Remove the folder and everything in it (best effort)."""

    def is_empty(self) -> bool:
        """Whether the folder holds nothing at all (or does not exist)."""
        return not self.listing() and not self._has_folders()

    @abstractmethod
    def _has_folders(self) -> bool: ...

    # --- verified reads -------------------------------------------------------------------
    def size(self, name: str) -> int:
        try:
            return self.listing()[name]
        except KeyError:
            raise StoreError(f"{self.label(name)}: the file is missing") from None

    def names(self, pattern: str) -> list[str]:
        """The names of the files matching the glob ``pattern``, sorted."""
        return sorted(n for n in self.listing() if fnmatch.fnmatchcase(n, pattern))

    def read_file(self, name: str, what: str, *, mapped: bool = False) -> pa.Buffer:
        """The whole file; missing or unreadable, a ``StoreError`` naming it."""
        try:
            return self.read(name, mapped=mapped)
        except FileNotFoundError:
            raise StoreError(f"{self.label(name)}: the {what} is missing") from None
        except MemoryError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{self.label(name)}: cannot read the {what} ({e})") from None

    def read_checked(self, name: str, expected: dict, what: str, *,
                     mapped: bool = False) -> pa.Buffer:
        """The whole file, verified against ``expected`` (its ``size`` and ``xxh64``)."""
        data = self.read_file(name, what, mapped=mapped)
        if data.size != expected["size"]:
            raise StoreError(f"{self.label(name)}: the {what} is damaged: {data.size} bytes, "
                             f"{expected['size']} expected (truncated or overwritten)")
        if digest(data) != expected["xxh64"]:
            raise StoreError(f"{self.label(name)}: the {what} is damaged (checksum mismatch)")
        return data

    def read_sealed_json(self, name: str, what: str, *, legacy_ok: bool = False) -> dict:
        """The body of a sealed JSON file, verified (see ``checksum.parse_sealed_json``)."""
        data = self.read_file(name, f"{what} file")
        return parse_sealed_json(data.to_pybytes(), self.label(name), what,
                                 legacy_ok=legacy_ok)

    def read_checked_npz(self, name: str, what: str) -> dict[str, np.ndarray]:
        """The arrays of an NPZ file named by its digest, verified (``FileNotFoundError``
        passes through: callers decide whether a vanished file is damage)."""
        try:
            data = self.read(name)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{self.label(name)}: cannot read the {what} ({e})") from None
        return parse_checked_npz(data, name, self.label(name), what)


class LocalFiles(Files):
    """A folder on this machine."""

    local = True

    def __init__(self, path: Path):
        self._path = Path(path)

    def __repr__(self) -> str:
        return f"LocalFiles({str(self._path)!r})"

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def path(self) -> Path:
        return self._path

    def child(self, name: str) -> LocalFiles:
        return LocalFiles(self._path / name)

    def label(self, name: str = "") -> str:
        return str(self._path / name) if name else str(self._path)

    def read(self, name: str, *, mapped: bool = False) -> pa.Buffer:
        # An Arrow buffer, not Python bytes: Arrow's threads may release the last reference
        # after the interpreter began to exit, and freeing a Python buffer then needs the
        # GIL (the process aborted, 1 run in 20).
        path = str(self._path / name)
        if mapped:
            return pa.memory_map(path).read_buffer()
        with pa.OSFile(path, "rb") as f:
            return f.read_buffer()

    def exists(self, name: str) -> bool:
        return (self._path / name).exists()

    def listing(self) -> dict[str, int]:
        out = {}
        for p in self._path.iterdir() if self._path.is_dir() else []:
            try:
                if p.is_file():
                    out[p.name] = p.stat().st_size
            except OSError:   # removed meanwhile
                continue
        return out

    def size(self, name: str) -> int:
        try:
            return (self._path / name).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{self.label(name)}: the file is missing") from None

    def stat(self, name: str) -> tuple[int, ...]:
        st = os.stat(os.path.join(self._path, name))   # every query asks: no Path objects
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def random_access(self, name: str) -> pa.MemoryMappedFile:
        return pa.memory_map(str(self._path / name))

    def write(self, name: str, data: pa.Buffer | bytes, *, atomic: bool = False) -> None:
        self._path.mkdir(parents=True, exist_ok=True)
        (write_atomic if atomic else write_bytes)(self._path / name, data)

    def sync(self) -> None:
        if self._path.is_dir():   # the folder's files, and its own name in its parent
            fsync_path(self._path)
            fsync_path(self._path.parent)

    def remove_all(self) -> None:
        remove_tree(self._path)

    def _has_folders(self) -> bool:
        return self._path.is_dir() and any(p.is_dir() for p in self._path.iterdir())


class RemoteFiles(Files):
    """A prefix on object storage. Its listing is read once (a database there is only
    read: masksearch never changes one in place); reads are counted in ``traffic``."""

    local = False

    def __init__(self, fs: pafs.FileSystem, base: str, url: str, traffic: Traffic):
        self.fs, self.base, self.url, self.traffic = fs, base, url, traffic
        self._listing: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"RemoteFiles({self.url!r})"

    @property
    def name(self) -> str:
        return self.base.rsplit("/", 1)[-1]

    def child(self, name: str) -> RemoteFiles:
        return RemoteFiles(self.fs, f"{self.base}/{name}", f"{self.url}/{name}", self.traffic)

    def label(self, name: str = "") -> str:
        return f"{self.url}/{name}" if name else self.url

    def read(self, name: str, *, mapped: bool = False) -> pa.Buffer:
        with self.fs.open_input_stream(f"{self.base}/{name}") as f:
            data = f.read_buffer()
        self.traffic.add(data.size)
        return data

    def exists(self, name: str) -> bool:
        return name in self.listing()

    def listing(self) -> dict[str, int]:
        if self._listing is None:
            self._listing = self._list()
        return self._listing

    def _entries(self) -> list:
        import pyarrow.fs as pafs

        entries = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True))
        self.traffic.add(0)
        return list(entries)

    def _list(self) -> dict[str, int]:
        import pyarrow.fs as pafs

        return {e.base_name: int(e.size) for e in self._entries()
                if e.type == pafs.FileType.File}

    def _has_folders(self) -> bool:
        import pyarrow.fs as pafs

        return any(e.type == pafs.FileType.Directory for e in self._entries())

    def is_empty(self) -> bool:
        return not self._entries()

    def stat(self, name: str) -> tuple[int, ...]:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(f"{self.base}/{name}")
        self.traffic.add(0)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(self.label(name))
        return (int(info.size), int(info.mtime_ns or 0))

    def random_access(self, name: str) -> RandomAccess:
        return _CountedFile(self.fs.open_input_file(f"{self.base}/{name}"), self.traffic)

    def write(self, name: str, data: pa.Buffer | bytes, *, atomic: bool = False) -> None:
        with self.fs.open_output_stream(f"{self.base}/{name}") as out:
            out.write(data)
        self._listing = None

    def sync(self) -> None:
        pass   # an object is durable once its upload completed

    def remove_all(self) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self.fs.delete_dir(self.base)
        self._listing = None


class _CountedFile:
    """A remote file whose reads are counted."""

    def __init__(self, f: pa.NativeFile, traffic: Traffic):
        self._f, self._traffic = f, traffic

    def size(self) -> int:
        return int(self._f.size())

    def read_at(self, nbytes: int, offset: int) -> pa.Buffer:
        data = self._f.read_at(nbytes, offset)
        self._traffic.add(len(data))
        return pa.py_buffer(data)


def files_at(where: Path | Location, traffic: Traffic | None = None) -> Files:
    """The files of the database folder ``where``."""
    if isinstance(where, Location):
        return RemoteFiles(where.filesystem(), where.base, where.url, traffic or Traffic())
    return LocalFiles(where)


def as_files(root: Path | str | os.PathLike[str] | Files) -> Files:
    """``root`` as ``Files`` (a path is a local folder)."""
    return root if isinstance(root, Files) else LocalFiles(Path(root))
