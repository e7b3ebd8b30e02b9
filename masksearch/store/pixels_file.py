"""The blobs of a segment's pixels file: held whole (memory-mapped on this machine, or
downloaded), or read one mask at a time from object storage with a ranged read each."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from .arrow_layout import blob_layout
from .files import RandomAccess


class WholeBlobs:
    """Blobs as slices of the pixels file's data buffer: memory-mapped, a mask's read
    touches only its own bytes (which stay the same: ``keeps_bytes``)."""

    keeps_bytes = True

    def __init__(self, source: pa.NativeFile | pa.Buffer):
        reader = source if isinstance(source, pa.NativeFile) else pa.BufferReader(source)
        table = pa.ipc.open_file(reader).read_all()
        chunks = table.column("blob").chunks
        # One chunk is the written layout: use it in place (combining would copy).
        column = chunks[0] if len(chunks) == 1 else table.column("blob").combine_chunks()
        _, offsets, self.data = column.buffers()
        self.offsets = np.frombuffer(offsets, np.int64)[column.offset:
                                                        column.offset + len(column) + 1]

    def matches(self, count: int) -> bool:
        """Whether the offsets fit ``count`` masks and the data."""
        offsets = self.offsets
        return len(offsets) == count + 1 and not (count and (
            offsets[0] < 0 or offsets[-1] > self.data.size or (np.diff(offsets) < 0).any()))

    def blob(self, row: int) -> pa.Buffer:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.data.slice(start, end - start)

    def prefetch(self, rows: Iterable[int]) -> None:
        """Nothing to do: the file is at hand."""

    def discard(self, rows: Iterable[int]) -> None:
        """Nothing fetched ahead."""

    def size(self, row: int) -> int:
        return int(self.offsets[row + 1] - self.offsets[row])


class RangedBlobs:
    """Blobs read from a remote file by one ranged read each, at the positions its Arrow
    layout gives (read once, in about two small reads). Each read fetches the bytes anew
    (``keeps_bytes`` is False: they are verified on every read)."""

    keeps_bytes = False

    def __init__(self, file: RandomAccess, size: int, count: int):
        self.file = file
        layout = blob_layout(lambda offset, n: file.read_at(n, offset).to_pybytes(), size,
                             count)
        self.starts, self.stops = layout.starts, layout.stops
        self._fetched: dict[int, Future[pa.Buffer]] = {}
        self._lock = threading.Lock()

    def matches(self, count: int) -> bool:
        return len(self.starts) == count

    def blob(self, row: int) -> pa.Buffer:
        with self._lock:
            fetched = self._fetched.pop(row, None)
        if fetched is not None:
            return fetched.result()
        return self._read(row)

    def prefetch(self, rows: Iterable[int]) -> None:
        """Start reading ``rows``' blobs, several requests at once (each waits for the
        network, not the CPU); ``blob(row)`` then takes a row's bytes once, as they come."""
        with self._lock:
            if len(self._fetched) > PREFETCH_HELD:     # never taken (a stopped query)
                self._fetched.clear()
            for row in rows:
                if row not in self._fetched:
                    self._fetched[row] = _fetcher().submit(self._read, row)

    def discard(self, rows: Iterable[int]) -> None:
        """Drop what was fetched ahead for ``rows`` and not taken (a stopped query)."""
        with self._lock:
            for row in rows:
                fetched = self._fetched.pop(row, None)
                if fetched is not None:
                    fetched.cancel()

    def _read(self, row: int) -> pa.Buffer:
        start, stop = int(self.starts[row]), int(self.stops[row])
        return self.file.read_at(stop - start, start) if stop > start else pa.py_buffer(b"")

    def size(self, row: int) -> int:
        return int(self.stops[row] - self.starts[row])


Blobs = WholeBlobs | RangedBlobs
FETCHING = 16        # ranged requests in flight at once, per process
PREFETCH_HELD = 1024  # blobs fetched ahead and not taken yet, per file, at most


@functools.cache
def _fetcher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(FETCHING, thread_name_prefix="masksearch-fetch")
