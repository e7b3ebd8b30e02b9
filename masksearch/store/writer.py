"""Writing masks into new segments: batches come in, full segments go out.

An ingest hands the writer batches of masks with their metadata columns (``IngestBatch``).
The writer loads each mask, keeps it with others of its pixel type, and writes a segment
whenever a pixel type has a segment's worth: its masks are compressed and indexed on all
cores, then its files are written and fsynced on a thread of their own while the next masks
load and compress. Memory holds at most one segment per pixel type, whatever the size of the
ingest, and the compressed form of the segment being written. Nothing written is visible
until the caller commits the manifest naming the new segments.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import IngestError
from ..index.chi import default_edges, edges_for_ranges, mask_range, value_ranges
from ..parallel import Background
from . import faults
from .durable import replace
from .manifest import Manifest, SegmentInfo
from .metadata import ARROW_TYPES, RESERVED, merged_type
from .segments import EncodedSegment, encode_segment, write_encoded

TypedColumn = tuple[str, pa.Array]          # (logical type, one value per mask)
ProgressFn = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class IngestBatch:
    """Masks to add with their metadata: ``loads[i]()`` gives mask i's checked pixels
    (loaded only when the writer reaches it), ``labels[i]`` says where it came from (for
    errors), and each column holds one value per mask."""

    labels: list[str]
    loads: list[Callable[[], np.ndarray]]
    columns: dict[str, TypedColumn] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.loads)


class ColumnTypes:
    """The table's columns and their logical types, as the manifest has them plus what the
    batches of this ingest bring; a batch whose values do not fit a column is refused."""

    def __init__(self, committed: Mapping[str, str]):
        self.types = dict(committed) or {"mask_id": "int64"}
        self._names = {name.lower(): name for name in self.types}

    def add(self, columns: Mapping[str, TypedColumn]) -> None:
        """Take a batch's columns, or refuse them all (the types stay as they were)."""
        types, names = dict(self.types), dict(self._names)
        try:
            for name, (kind, _) in columns.items():
                self._check_name(name)
                self.types[name] = merged_type(name, self.types.get(name), kind)
                self._names[name.lower()] = name
        except BaseException:
            self.types, self._names = types, names
            raise

    def _check_name(self, name: str) -> None:
        if name in ("image_id", "model_id", "mask_type"):
            return
        if not isinstance(name, str) or not name.isidentifier():
            raise IngestError(f"metadata column name {name!r} is not a valid identifier")
        if name.lower() in RESERVED or name.startswith("_"):
            raise IngestError(f"metadata column {name!r} is reserved (so are names "
                              "starting with '_')")
        # Column names are case-insensitive in queries: 'Score' and 'score' would clash.
        other = self._names.get(name.lower())
        if other is not None and other != name:
            raise IngestError(f"metadata column {name!r} clashes with column {other!r} "
                              "(names are case-insensitive)")

    def ordered(self) -> dict[str, str]:
        """System columns first, then the others in the order they came."""
        types = dict(self.types)
        types.setdefault("height", "int64")
        types.setdefault("width", "int64")
        system = ["mask_id", "image_id", "model_id", "mask_type", "height", "width"]
        return {k: types.get(k, "null") for k in system} | {
            k: v for k, v in types.items() if k not in system}


@dataclass
class _Pending:
    """Masks of one pixel type waiting for their segment, with their metadata rows."""

    masks: list[np.ndarray] = field(default_factory=list)
    parts: list[tuple[pa.Table, list[int]]] = field(default_factory=list)   # (batch, rows)
    nbytes: int = 0


class SegmentWriter:
    """Writes the masks of an ingest into new segment folders (listed in ``written``, so a
    failed ingest can remove them) and says which segments to commit (``finish``)."""

    def __init__(self, root: Path, manifest: Manifest, types: ColumnTypes, *,
                 segment_masks: int, segment_bytes: int, build_index: bool,
                 progress: ProgressFn | None = None, total: int | None = None,
                 keys: tuple[str, ...] = ()):
        self.root, self.manifest, self.types = root, manifest, types
        self.key_names = keys
        self._keys: list[pa.Table] = []     # the key columns' values of every mask added
        self.segment_masks, self.segment_bytes = segment_masks, segment_bytes
        self.build_index = build_index
        self.progress, self.total = progress, total
        self._written: list[Path] = []
        self._background = Background("masksearch-segment-writer")
        self._guesses: dict[str, np.ndarray | None] = {}    # dtype -> bin edges to try
        self.segments: list[SegmentInfo] = []
        self.count = 0                  # masks added so far
        self._pending: dict[str, _Pending] = {}
        self._loaded = self._encoded = 0

    def add(self, batch: IngestBatch) -> None:
        """Take a batch: its masks get the next mask ids, in order."""
        self.types.add(batch.columns)
        n = len(batch)
        ids = np.arange(self.count, self.count + n, dtype=np.int64) + self.manifest.next_mask_id
        table = pa.table({"mask_id": pa.array(ids)} | {
            name: values for name, (_, values) in batch.columns.items()})
        self.count += n
        if self.key_names:
            self._keys.append(key_values(table, self.key_names, self.types, self.manifest))
        for i, load in enumerate(batch.loads):
            pixels = load()
            pending = self._pending.setdefault(pixels.dtype.name, _Pending())
            pending.masks.append(pixels)
            if not pending.parts or pending.parts[-1][0] is not table:
                pending.parts.append((table, []))
            pending.parts[-1][1].append(i)
            pending.nbytes += pixels.nbytes
            self._loaded += 1
            self._report()
            if len(pending.masks) >= self.segment_masks or pending.nbytes >= self.segment_bytes:
                self._flush(pixels.dtype.name)

    def keys(self) -> pa.Table:
        """The key columns (``keys``) of every mask added, as given."""
        return pa.concat_tables(self._keys, promote_options="permissive")

    def finish(self) -> list[SegmentInfo]:
        """Write what is pending; the segments to commit, in mask id order per pixel type."""
        for dtype_name in list(self._pending):
            self._flush(dtype_name)
        self._background.wait()
        return self.segments

    @property
    def written(self) -> list[Path]:
        """The folders this writer made (a failed ingest removes them), once the segment
        being written, if any, is no longer."""
        self._background.settle()
        return self._written

    def _report(self) -> None:
        # Loading and writing are each half the work; 100% only once all is written.
        if self.progress is not None:
            self.progress((self._loaded + self._encoded) // 2, self.total)

    def _encoded_some(self, k: int) -> None:
        self._encoded += k
        self._report()

    def _flush(self, dtype_name: str) -> None:
        pending = self._pending.pop(dtype_name)
        masks = pending.masks
        meta = self._metadata(pending)
        name = f"seg-{uuid.uuid4().hex[:16]}"
        tmp = self.root / "segments" / f"tmp-{name}"
        self._written.append(tmp)
        tmp.mkdir(parents=True)
        faults.point("mkdir segment")
        encoded = self._encode(masks)
        self.segments.append(SegmentInfo(name, len(masks), dtype_name,
                                         int(meta.column("mask_id")[0].as_py())))
        del masks, pending      # the pixels: the next segment's can load meanwhile
        self._background.start(partial(self._write, tmp, self.root / "segments" / name,
                                       encoded, meta))

    def _write(self, tmp: Path, final: Path, encoded: EncodedSegment, meta: pa.Table) -> None:
        """On the background thread: the segment's files, then its folder renamed in."""
        write_encoded(tmp, encoded, meta)
        replace(tmp, final)
        self._written.append(final)

    def _metadata(self, pending: _Pending) -> pa.Table:
        """The segment's metadata rows: mask ids, the batches' columns (as the column types
        stand now: a later batch may widen int64 to float64), heights and widths."""
        names = [n for n in self.types.types if n not in ("height", "width")]
        parts = []
        for table, rows in pending.parts:
            taken = table.take(pa.array(rows, pa.int64()))
            arrays = [taken.column(n).cast(ARROW_TYPES[self.types.types[n]])
                      if n in taken.column_names else self._default(n, len(rows))
                      for n in names]
            parts.append(pa.Table.from_arrays(arrays, names=names))
        meta = pa.concat_tables(parts)
        # Columns no batch of this segment gave stay out (a committed column may be absent),
        # but for those with a DEFAULT.
        given = {n for table, _ in pending.parts for n in table.column_names}
        given |= set(self.manifest.defaults)
        meta = meta.select([n for n in names if n in given])
        meta = meta.append_column("height", pa.array([m.shape[0] for m in pending.masks],
                                                     pa.int64()))
        return meta.append_column("width", pa.array([m.shape[1] for m in pending.masks],
                                                    pa.int64()))

    def _default(self, name: str, n: int) -> pa.Array:
        return default_values(name, n, self.types, self.manifest)

    def _encode(self, masks: list[np.ndarray]) -> EncodedSegment:
        """Compress and index a segment's masks. Its bin edges come from the masks' values:
        rather than a pass over them first, the edges are guessed (float masks: those of
        values in [0, 1], unless the first mask says otherwise; then the edges of the last
        segment of the type) and checked against the value ranges taken while compressing;
        a wrong guess builds the index again, and stops the guessing for the type."""
        dtype = masks[0].dtype
        guess = (self._guesses[dtype.name] if dtype.name in self._guesses
                 else _first_guess(masks))
        if dtype.name in self.manifest.bin_edges or guess is None:
            edges = segment_edges(self.manifest, masks)
            encoded = encode_segment(masks, edges, self.manifest.cell_size, self.manifest.codec,
                                     self._encoded_some, self.build_index)
            # Integer masks often span the same values segment after segment; float
            # masks beyond [0, 1] get edges fitted to their exact range: no guess.
            self._guesses.setdefault(dtype.name, None if dtype.kind == "f" else edges)
            return encoded
        encoded = encode_segment(masks, guess, self.manifest.cell_size, self.manifest.codec,
                                 self._encoded_some, self.build_index,
                                 fit=partial(edges_for_ranges, dtype))
        self._guesses[dtype.name] = encoded.edges if encoded.guessed else None
        return encoded


def _first_guess(masks: list[np.ndarray]) -> np.ndarray | None:
    """Bin edges to try for the first segment of float masks: those of values in [0, 1],
    unless the first mask alone has values outside (the segment's range only grows)."""
    if masks[0].dtype.kind != "f":
        return None
    unit = default_edges(masks[0].dtype, 0.0, 1.0)
    first = np.empty((1, 2))
    mask_range(masks[0], first[0])
    fitted = edges_for_ranges(masks[0].dtype, first)
    return unit if fitted.shape == unit.shape and bool(np.all(fitted == unit)) else None


def default_values(name: str, n: int, types: ColumnTypes, manifest: Manifest) -> pa.Array:
    """The column's DEFAULT (ALTER TABLE ... ADD COLUMN) for ``n`` new rows, else NULLs."""
    kind = ARROW_TYPES[types.types[name]]
    if name not in manifest.defaults:
        return pa.nulls(n, kind)
    return pa.array([manifest.defaults[name]] * n, kind)


def key_values(table: pa.Table, keys: tuple[str, ...], types: ColumnTypes,
               manifest: Manifest) -> pa.Table:
    """An upsert's key columns of new rows (``table``) as they will be stored: a column the
    rows lack gets its DEFAULT."""
    n = table.num_rows
    return pa.table({k: table.column(k) if k in table.column_names
                     else default_values(k, n, types, manifest) if k in types.types
                     else pa.nulls(n) for k in keys})


def segment_edges(manifest: Manifest, masks: list[np.ndarray]) -> np.ndarray:
    """The bin edges of a new segment of ``masks`` (one pixel type): the database's
    override for the type, else edges fitted to the masks' values."""
    dtype = masks[0].dtype
    override = manifest.bin_edges.get(dtype.name)
    if override is not None:
        return np.asarray(override, dtype=np.float64)
    return edges_for_ranges(dtype, value_ranges(masks))
