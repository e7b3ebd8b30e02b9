"""The blob layout of a pixels file (``store.arrow_layout``), read with a few ranged reads,
equals what pyarrow reads from the whole file; a damaged file is a ``LayoutError``, never
another exception."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.store.arrow_layout import LayoutError, blob_layout
from masksearch.store.segments import BLOB_SCHEMA

from .strategies import examples


def pixels_file(batches: list[list[bytes]]) -> bytes:
    """An Arrow IPC file of one ``blob`` column, one record batch per list, as pyarrow
    writes it (``segments.write_segment`` writes one batch)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, BLOB_SCHEMA) as writer:
        for blobs in batches:
            writer.write_table(pa.table({"blob": pa.array(blobs, pa.large_binary())}))
    return sink.getvalue().to_pybytes()


def read_by_pyarrow(data: bytes) -> list[bytes]:
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    return [b.as_py() for b in table.column("blob")]


class Reads:
    """``read_at`` over bytes, recording each read."""

    def __init__(self, data: bytes):
        self.data, self.reads = data, []

    def __call__(self, offset: int, n: int) -> bytes:
        self.reads.append((offset, n))
        return self.data[offset:offset + n]


blob_lists = st.lists(st.lists(st.binary(max_size=300), max_size=12), min_size=1, max_size=3)


@settings(max_examples=examples(200))
@given(blob_lists)
def test_the_layout_finds_every_blob_as_pyarrow_reads_it(batches):
    data = pixels_file(batches)
    reads = Reads(data)
    count = sum(len(b) for b in batches)
    layout = blob_layout(reads, len(data), count)
    assert [data[a:b] for a, b in zip(layout.starts, layout.stops, strict=True)] == \
        read_by_pyarrow(data)
    # The footer, then each batch's metadata (with its offsets, as a rule): few reads.
    assert len(reads.reads) <= 1 + 2 * len(batches)


def test_one_batch_of_many_blobs_takes_two_small_reads():
    blobs = [bytes([i % 251]) * (1000 + i) for i in range(500)]
    data = pixels_file([blobs])
    reads = Reads(data)
    layout = blob_layout(reads, len(data), len(blobs))
    assert len(reads.reads) == 2
    fetched = sum(n for _, n in reads.reads)
    assert fetched < 1024 + 8 * 501 + 1024 < len(data) // 50
    assert data[layout.starts[7]:layout.stops[7]] == blobs[7]


@settings(max_examples=examples(300))
@given(blob_lists, st.data())
def test_damage_is_a_layout_error_or_a_layout_within_the_file(batches, draw):
    data = bytearray(pixels_file(batches))
    count = sum(len(b) for b in batches)
    how = draw.draw(st.sampled_from(["flip", "truncate", "garbage"]))
    if how == "flip":
        for _ in range(draw.draw(st.integers(1, 4))):
            at = draw.draw(st.integers(0, len(data) - 1))
            data[at] ^= draw.draw(st.integers(1, 255))
    elif how == "truncate":
        del data[draw.draw(st.integers(0, len(data) - 1)):]
    else:
        data = bytearray(draw.draw(st.binary(max_size=400)))
    try:
        layout = blob_layout(Reads(bytes(data)), len(data), count)
    except LayoutError:
        return
    # A flip may leave a readable layout (then each blob's digest decides): within the file.
    assert len(layout) == count
    assert ((layout.starts >= 0) & (layout.starts <= layout.stops)
            & (layout.stops <= len(data))).all()


def test_another_schema_or_count_is_refused():
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, pa.schema([("blob", pa.binary())])) as writer:
        writer.write_table(pa.table({"blob": pa.array([b"x"], pa.binary())}))
    data = sink.getvalue().to_pybytes()
    with pytest.raises(LayoutError, match="large_binary"):
        blob_layout(Reads(data), len(data), 1)
    data = pixels_file([[b"a", b"b"]])
    with pytest.raises(LayoutError, match="holds 2 masks, the segment 3"):
        blob_layout(Reads(data), len(data), 3)
