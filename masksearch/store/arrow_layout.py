"""Where each mask's blob lies in a pixels file, found with a few small ranged reads, so
that reading one mask of a remote segment fetches only that mask's bytes.

A pixels file is an Arrow IPC file (the published, stable format) of one column, ``blob``
(large_binary), written by ``segments.write_segment``. Its footer (at the end of the file)
holds the schema and a Block per record batch; each batch's message metadata lists its
buffers (validity, offsets, data) relative to the batch's body; the offsets buffer gives
every blob's start and end within the data buffer. This is a minimal reader of the
flatbuffers involved (File.fbs: Footer, Block; Message.fbs: Message, RecordBatch,
FieldNode, Buffer; Schema.fbs: Schema, Field); anything it does not expect (another schema,
compressed buffers, nulls) is a ``LayoutError``. Every blob read is still verified against
its own digest, so a misread layout can only fail, never answer wrongly.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAGIC = b"ARROW1"
TAIL = 1024             # bytes read from the end of the file: the footer, usually
CONTINUATION = 0xFFFFFFFF
LARGE_BINARY = 19       # Schema.fbs, union Type
RECORD_BATCH = 3        # Message.fbs, union MessageHeader
LITTLE_ENDIAN = 0       # Schema.fbs, enum Endianness
BLOCK = struct.Struct("<qi4xq")     # File.fbs: offset, metaDataLength, (padding), bodyLength
PAIR = struct.Struct("<qq")         # FieldNode (length, null_count); Buffer (offset, length)

ReadAt = Callable[[int, int], bytes]    # (offset, nbytes) -> exactly those bytes


class LayoutError(ValueError):
    """The file is not a pixels file as masksearch writes them (or it is damaged)."""


@dataclass(frozen=True)
class BlobLayout:
    """Per mask (row), where its blob starts and ends in the file (absolute positions)."""

    starts: np.ndarray
    stops: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


class _Table:
    """A flatbuffers table in ``buf`` at ``pos``: fields by their index in the schema."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vtable = pos - _unpack("<i", buf, pos)
        self.vsize = _unpack("<H", buf, vtable)
        self.vtable = vtable

    def _at(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vsize:
            return None
        offset = _unpack("<H", self.buf, self.vtable + entry)
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int) -> int:
        at = self._at(index)
        return default if at is None else _unpack(fmt, self.buf, at)

    def table(self, index: int) -> _Table | None:
        at = self._at(index)
        return None if at is None else _Table(self.buf, at + _unpack("<I", self.buf, at))

    def vector(self, index: int) -> tuple[int, int]:
        """(position of the first element, number of elements); (0, 0) when absent."""
        at = self._at(index)
        if at is None:
            return 0, 0
        start = at + _unpack("<I", self.buf, at)
        return start + 4, _unpack("<I", self.buf, start)

    def tables(self, index: int) -> list[_Table]:
        start, n = self.vector(index)
        if start + 4 * n > len(self.buf):
            raise LayoutError("a vector runs past the end")
        return [_Table(self.buf, start + 4 * k + _unpack("<I", self.buf, start + 4 * k))
                for k in range(n)]

    def string(self, index: int) -> bytes:
        start, n = self.vector(index)
        if start + n > len(self.buf):
            raise LayoutError("a string runs past the end")
        return self.buf[start:start + n]


def _unpack(fmt: str, buf: bytes, pos: int) -> int:
    if pos < 0:
        raise LayoutError("an offset points before the start")
    try:
        return int(struct.unpack_from(fmt, buf, pos)[0])
    except struct.error:
        raise LayoutError("an offset points past the end") from None


def _root(buf: bytes) -> _Table:
    return _Table(buf, _unpack("<I", buf, 0))


class _Reader:
    """Ranged reads of a file of ``size`` bytes, served from the last read when it covers
    the range (the layout is read with a few reads that ask for a little more)."""

    def __init__(self, read_at: ReadAt, size: int):
        self.read_at, self.size = read_at, size
        self._start, self._data = 0, b""

    def read(self, offset: int, n: int, more: int = 0) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise LayoutError(f"bytes {offset}..{offset + n} lie outside the file "
                              f"({self.size} bytes)")
        if not (self._start <= offset and offset + n <= self._start + len(self._data)):
            self._start = offset
            self._data = bytes(self.read_at(offset, min(n + more, self.size - offset)))
            if len(self._data) < n:
                raise LayoutError("the file is shorter than it says")
        return self._data[offset - self._start:offset - self._start + n]


def blob_layout(read_at: ReadAt, size: int, count: int) -> BlobLayout:
    """Where the ``count`` blobs of the pixels file (``size`` bytes, read by ``read_at``)
    are: about two small reads. Raises ``LayoutError`` for a file that is not as written."""
    reader = _Reader(read_at, size)
    blocks = _footer_blocks(reader)
    starts, stops = [], []
    for offset, meta_length, body_length in blocks:
        if offset < 0 or meta_length <= 0 or body_length < 0 \
                or offset + meta_length + body_length > size:
            raise LayoutError("a record batch lies outside the file")
        a, b = _batch_blobs(reader, offset, meta_length, body_length, count)
        starts.append(a)
        stops.append(b)
    layout = BlobLayout(np.concatenate(starts) if starts else np.zeros(0, np.int64),
                        np.concatenate(stops) if stops else np.zeros(0, np.int64))
    if len(layout) != count:
        raise LayoutError(f"the file holds {len(layout)} masks, the segment {count}")
    return layout


def _footer_blocks(reader: _Reader) -> list[tuple[int, int, int]]:
    """The record batches' Blocks, from the footer, its schema checked."""
    if reader.size < len(MAGIC) * 2 + 4:
        raise LayoutError("the file is too short to be an Arrow file")
    n = min(TAIL, reader.size)
    tail = reader.read(reader.size - n, n)[-10:]
    if tail[4:] != MAGIC:
        raise LayoutError("the file does not end as an Arrow file")
    length = struct.unpack_from("<i", tail, 0)[0]
    start = reader.size - 10 - length
    if length <= 0 or start < len(MAGIC):
        raise LayoutError("the footer's length is impossible")
    footer = _root(reader.read(start, length))
    schema = footer.table(1)
    if schema is None:
        raise LayoutError("the footer has no schema")
    _check_schema(schema)
    first, n = footer.vector(3)
    if first + n * BLOCK.size > len(footer.buf):
        raise LayoutError("the footer's record batches run past its end")
    return [BLOCK.unpack_from(footer.buf, first + k * BLOCK.size) for k in range(n)]


def _check_schema(schema: _Table) -> None:
    if schema.scalar(0, "<h", LITTLE_ENDIAN) != LITTLE_ENDIAN:
        raise LayoutError("the file is big-endian")
    fields = schema.tables(1)
    if len(fields) != 1 or fields[0].string(0) != b"blob" \
            or fields[0].scalar(2, "<B", 0) != LARGE_BINARY:
        raise LayoutError("the schema is not one large_binary column 'blob'")


def _batch_blobs(reader: _Reader, offset: int, meta_length: int, body_length: int,
                 count: int) -> tuple[np.ndarray, np.ndarray]:
    """Absolute (starts, stops) of the blobs of the record batch at ``offset``."""
    # The metadata, and the start of the body where the offsets usually are: one read.
    meta = reader.read(offset, meta_length, more=8 * (count + 1) + 64)
    prefix = 8 if struct.unpack_from("<I", meta, 0)[0] == CONTINUATION else 4
    message = _root(meta[prefix:])
    if message.scalar(1, "<B", 0) != RECORD_BATCH:
        raise LayoutError("a record batch block holds another kind of message")
    batch = message.table(2)
    if batch is None or batch.table(3) is not None:
        raise LayoutError("the record batch is missing or compressed")
    rows = batch.scalar(0, "<q", 0)
    node_at, nodes = batch.vector(1)
    buf_at, buffers = batch.vector(2)
    if nodes != 1 or buffers != 3 or rows < 0 \
            or buf_at + 3 * PAIR.size > len(batch.buf) or node_at + PAIR.size > len(batch.buf):
        raise LayoutError("the record batch does not hold one binary column")
    length, nulls = PAIR.unpack_from(batch.buf, node_at)
    (off_at, off_len), (data_at, data_len) = (PAIR.unpack_from(batch.buf, buf_at + PAIR.size * k)
                                              for k in (1, 2))
    if length != rows or nulls != 0 or off_len < 8 * (rows + 1) \
            or max(off_at + off_len, data_at + data_len) > body_length \
            or min(off_at, data_at, data_len) < 0:
        raise LayoutError("the record batch's buffers do not fit its body")
    body = offset + meta_length
    offsets = np.frombuffer(reader.read(body + off_at, 8 * (rows + 1)), "<i8").astype(np.int64)
    if rows and (offsets[0] < 0 or offsets[-1] > data_len or (np.diff(offsets) < 0).any()):
        raise LayoutError("the blob offsets do not fit the data buffer")
    return body + data_at + offsets[:-1], body + data_at + offsets[1:]
