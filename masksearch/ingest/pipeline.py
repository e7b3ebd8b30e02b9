"""From the arguments of ``ingest`` to the batches the store writes.

Masks become items (arrays and tensors by position, files with their names, a streaming
source such as a COCO file batch by batch); metadata is read and checked as a whole, joined
to files by key (never by position) or to arrays by position (lengths checked); id columns
come from the arguments, the metadata or the files' stems. Pixels are loaded and checked
only when the store writes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import pyarrow as pa

from ..errors import IngestError
from ..store.metadata import id_column, metadata_column
from ..store.writer import IngestBatch, TypedColumn
from .arrays import array_items, is_array_like, sequence_items
from .files import expand_paths, file_items
from .items import MaskItem, Source, SourceBatch
from .join import key_rows
from .pixels import Conversion, check_mask
from .tables import ID_COLUMNS, Metadata, read_metadata, typed_columns

DEFAULT_KEY = "file"


@dataclass(frozen=True)
class IngestOptions:
    """The arguments of ``ingest`` beside the masks (see ``Database.ingest``)."""

    image_id: object = None
    model_id: object = None
    mask_type: object = None
    metadata: object = None
    key: str | None = None
    allow_missing: bool = False
    box_format: str = "xyxy"
    dtype: str | None = None
    scale: float | None = None


@dataclass(frozen=True)
class Prepared:
    """What to hand the store: the batches (consumed once) and how many masks, if known."""

    batches: Iterator[IngestBatch]
    total: int | None


def prepare(masks: object, options: IngestOptions, existing: Mapping[str, str],
            batch_size: int) -> Prepared:
    """The batches of an ingest; ``existing``: the database's column types."""
    conversion = Conversion(options.dtype, options.scale)
    if _is_source(masks):
        source = cast(Source, masks)
        return Prepared(_stream(source, options, conversion, batch_size), source.total)
    items, files = _items(masks)
    columns = metadata_columns(items, files, options, existing)
    batch = IngestBatch([item.label for item in items],
                        [_loader(item, conversion) for item in items], columns)
    return Prepared(iter([batch]), len(items))


def _is_source(masks: object) -> bool:
    return hasattr(masks, "batches") and hasattr(masks, "total") and callable(masks.batches)


def _items(masks: object) -> tuple[list[MaskItem], bool]:
    """The masks' items, and whether they come from files."""
    if isinstance(masks, (str, os.PathLike)):
        return file_items(expand_paths([masks])), True
    if is_array_like(masks):
        return array_items(masks), False
    if not isinstance(masks, (Sequence, Iterator)) or isinstance(masks, (bytes, Mapping)):
        raise IngestError(f"masks: expected arrays, tensors, paths or globs, or a source such "
                          f"as masksearch.from_coco(...), got {type(masks).__name__}")
    values = list(masks)
    if not values:
        raise IngestError("masks: nothing to ingest")
    paths = [isinstance(v, (str, os.PathLike)) for v in values]
    if all(paths):
        return file_items(expand_paths(values)), True
    if any(paths):
        raise IngestError(f"mask {paths.index(not paths[0])}: paths and arrays cannot be "
                          "mixed in one ingest")
    return sequence_items(values), False


def _loader(item: MaskItem, conversion: Conversion) -> Any:
    return partial(checked_pixels, item, conversion)


def checked_pixels(item: MaskItem, conversion: Conversion) -> Any:
    """The item's pixels, checked and converted (what the store writes)."""
    return check_mask(item.load(), item.label, conversion)


def metadata_columns(items: list[MaskItem], files: bool, options: IngestOptions,
                     existing: Mapping[str, str]) -> dict[str, TypedColumn]:
    """Id and metadata columns, one value per item (joined to files by key, to arrays by
    position)."""
    n = len(items)
    table = read_metadata(options.metadata, (options.key or DEFAULT_KEY) if files else None)
    columns: dict[str, TypedColumn] = {}
    if table is not None:
        rows = _rows(items, files, table, options)
        typed = typed_columns(table, existing, options.box_format)
        taken = pa.array(rows, pa.int64())      # None: no row, its values NULL
        columns = {name: (kind, values.take(taken)) for name, (kind, values) in typed.items()}
    ids = {"image_id": options.image_id, "model_id": options.model_id,
           "mask_type": options.mask_type}
    for name, value in ids.items():
        if value is not None and name in columns:
            raise IngestError(f"{name} is given both as an argument and by a column of "
                              f"{table.origin if table else 'the metadata'}")
        if value is None and name in columns:
            continue
        if value is None and name == "image_id":
            if not files:
                raise IngestError("image_id is required when ingesting arrays")
            value = [item.image_id for item in items]
        columns[name] = id_column(name, value, n, nullable=name != "image_id")
    if columns["image_id"][1].null_count and files:
        # Files without a row (allowed) take their stem as image_id, as without metadata.
        values = columns["image_id"][1].to_pylist()
        columns["image_id"] = id_column("image_id", [
            item.image_id if v is None else v for v, item in zip(values, items, strict=True)],
            n, nullable=False)
    return columns


def _rows(items: list[MaskItem], files: bool, table: Metadata, options: IngestOptions
          ) -> list[int | None]:
    """The table row of each item: by key for files, by position for arrays."""
    if not files:
        if options.key is not None:
            raise IngestError(f"key={options.key!r} joins metadata to files; arrays are "
                              "matched to their metadata by position")
        if table.n_rows != len(items):
            what = f"{table.label(next(iter(table.columns)))} has {table.n_rows} values" \
                if table.columns else f"{table.origin} has {table.n_rows} rows"
            raise IngestError(f"{what} for {len(items)} masks (arrays are matched to "
                              "metadata by position)")
        return list(range(len(items)))
    key = options.key or DEFAULT_KEY
    if key not in table.columns:
        raise IngestError(f"{table.origin} has no column {key!r} to match rows to files by "
                          f"(the file's path, name or stem); name the key column with "
                          f"key= (--key); columns: {', '.join(table.columns)}")
    return key_rows(items, list(table.columns[key]), key, table.origin, options.allow_missing)


def _stream(source: Source, options: IngestOptions, conversion: Conversion,
            batch_size: int) -> Iterator[IngestBatch]:
    """A streaming source's batches, with the ids the arguments add to every mask."""
    if options.metadata is not None or options.key is not None:
        raise IngestError("metadata= cannot be added to a source that brings its own "
                          "columns (such as a COCO file): ingest it, then join more "
                          "columns by key")
    for batch in source.batches(batch_size):
        yield _typed_batch(batch, options, conversion)


def _typed_batch(batch: SourceBatch, options: IngestOptions,
                 conversion: Conversion) -> IngestBatch:
    n = len(batch.items)
    columns: dict[str, TypedColumn] = {}
    for name, values in batch.columns.items():
        if name in ID_COLUMNS:
            columns[name] = id_column(name, values, n, nullable=name != "image_id")
        else:
            columns[name] = metadata_column(name, values, n)
    ids = {"image_id": options.image_id, "model_id": options.model_id,
           "mask_type": options.mask_type}
    for name, value in ids.items():
        if value is None:
            continue
        if name in columns:
            raise IngestError(f"{name} is given by the source; it cannot be set too")
        columns[name] = id_column(name, value, n, nullable=name != "image_id")
    if "image_id" not in columns:
        raise IngestError("image_id is required: the source gives none")
    return IngestBatch([item.label for item in batch.items],
                       [_loader(item, conversion) for item in batch.items], columns)
