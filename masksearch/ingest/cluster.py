"""Ingest of a Dask collection: workers load, check, compress, index and write the masks of
their partitions in parallel; the client joins the metadata and commits once.

A ``dask.array.Array`` of shape (N, H, W) is split along its first axis; a ``dask.bag.Bag``
holds 2-D arrays or mask files (paths, folders, globs). Metadata joins as for any ingest
(arrays by position, files by key), so the client knows where each partition starts and
the workers write complete segments, with their final mask ids, into a staging folder of
this ingest under ``segments/``. The client moves them in and commits; before that nothing
is visible, and a failure, a cancelled ingest or a dead client leaves only uncommitted
folders, which the next writer removes.

A bag of arrays is computed twice (once to count its masks, once to write them): persist
it first when computing it is costly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import IngestError, MaskSearchError
from ..store.changes import Change, replaced_rows
from ..store.durable import fsync_path, remove_tree
from ..store.manifest import Manifest, SegmentInfo
from ..store.store import Store
from ..store.writer import ColumnTypes, IngestBatch, SegmentWriter, TypedColumn, key_values
from .files import expand_paths, file_items
from .items import MaskItem
from .pipeline import IngestOptions, checked_pixels, metadata_columns
from .pixels import Conversion

ProgressFn = Callable[[int, "int | None"], None]


def is_dask_collection(masks: object) -> bool:
    """A ``dask.array.Array`` or ``dask.bag.Bag`` (checked without importing Dask)."""
    module = type(masks).__module__
    return module.startswith(("dask.array", "dask.bag")) and hasattr(masks, "to_delayed")


@dataclass(frozen=True)
class Partition:
    """Masks ``start`` to ``start + count`` of the collection: ``data`` computes them (an
    (n, H, W) array or a list of 2-D arrays), or ``files`` hold them."""

    data: Any
    start: int
    count: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteSpec:
    """What every partition's writer needs beside its masks (sent to the workers)."""

    staging: str
    manifest: Manifest
    committed: dict[str, str]
    segment_masks: int
    segment_bytes: int
    build_index: bool
    conversion: Conversion
    abort: str | None = None     # the name of a ``distributed.Event`` set when it failed


def partitions(masks: Any) -> tuple[list[Partition], list[MaskItem], bool]:
    """The collection's partitions, an item per mask (for the metadata join: labels, keys,
    file stems) and whether the masks are files."""
    import dask

    if type(masks).__module__.startswith("dask.array"):
        return _array_partitions(masks)
    parts = masks.to_delayed()
    described = dask.compute(*[dask.delayed(_describe)(p) for p in parts])
    # An empty partition holds neither paths nor arrays: it goes with the others.
    kinds = {files is not None for count, files in described if count}
    if kinds == {True}:
        return _file_partitions([files or [] for _, files in described])
    if len(kinds) > 1:
        raise IngestError("masks: paths and arrays cannot be mixed in one ingest")
    out, start = [], 0
    for part, (count, _) in zip(parts, described, strict=True):
        out.append(Partition(part, start, count))
        start += count
    return out, [MaskItem(f"mask {i}", _no_load) for i in range(start)], False


def _array_partitions(array: Any) -> tuple[list[Partition], list[MaskItem], bool]:
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise IngestError(f"masks: expected a Dask array of shape (N, H, W), got shape "
                          f"{array.shape}")
    if any(np.isnan(c) for c in array.chunks[0]):
        raise IngestError("masks: the Dask array's chunk sizes are unknown "
                          "(call .compute_chunk_sizes() first)")
    array = array.rechunk({1: -1, 2: -1})
    out, start = [], 0
    for part, count in zip(array.to_delayed().ravel(), array.chunks[0], strict=True):
        out.append(Partition(part, start, int(count)))
        start += int(count)
    return out, [MaskItem(f"mask {i}", _no_load) for i in range(start)], False


def _file_partitions(files: Sequence[list[str]]) -> tuple[list[Partition], list[MaskItem], bool]:
    out, items, start = [], [], 0
    for names in files:
        found = file_items(expand_paths(names))
        out.append(Partition(None, start, len(found), tuple(names)))
        items += found
        start += len(found)
    return out, items, True


def _describe(part: Sequence[Any]) -> tuple[int, list[str] | None]:
    """A bag partition's count of elements, and its paths when every element is one."""
    values = list(part)
    if values and all(isinstance(v, (str, os.PathLike)) for v in values):
        return len(values), [os.fspath(v) for v in values]
    return len(values), None


def _element(values: Any, i: int) -> Any:
    return values[i]


def _no_load() -> Any:
    raise AssertionError("the client never loads a cluster ingest's pixels")


def write_partition(data: Any, part: Partition, spec: WriteSpec,
                    columns: dict[str, TypedColumn]) -> list[SegmentInfo]:
    """On a worker: the partition's masks, checked, in new segments under the staging
    folder, with mask ids from the partition's start (the task of a cluster ingest). A task
    that starts after the ingest failed writes nothing."""
    if not part.count or (spec.abort is not None and _aborted(spec.abort)):
        return []
    if part.files:
        items = file_items(expand_paths(list(part.files)))
    else:
        arrays = data if isinstance(data, np.ndarray) else list(data)
        items = [MaskItem(f"mask {part.start + i}", partial(_element, arrays, i))
                 for i in range(len(arrays))]
    if len(items) != part.count:
        raise IngestError(f"masks {part.start} to {part.start + part.count - 1}: the "
                          f"partition now holds {len(items)} masks, not {part.count}")
    manifest = replace(spec.manifest, next_mask_id=spec.manifest.next_mask_id + part.start)
    writer = SegmentWriter(Path(spec.staging), manifest, ColumnTypes(spec.committed),
                           segment_masks=spec.segment_masks, segment_bytes=spec.segment_bytes,
                           build_index=spec.build_index)
    writer.add(IngestBatch([item.label for item in items],
                           [partial(checked_pixels, item, spec.conversion) for item in items],
                           columns))
    return writer.finish()


def _aborted(name: str) -> bool:
    from distributed import Event

    return bool(Event(name).is_set())


def ingest_collection(store: Store, masks: Any, options: IngestOptions, *, client: Any,
                      progress: ProgressFn | None = None, index: bool | None = None,
                      replace_on: tuple[str, ...] = ()) -> tuple[list[int], int]:
    """Ingest a Dask collection in one atomic commit (see the module's docstring); returns
    the new mask ids and how many masks they replaced. ``client``: a
    ``distributed.Client``, or None for Dask's default scheduler."""
    if store.read_only:
        with store.writing():   # refused, saying why (before any partition is computed)
            pass
    parts, items, files = partitions(masks)
    total = sum(p.count for p in parts)
    if not total:
        raise IngestError("masks: nothing to ingest")
    columns = metadata_columns(items, files, options, store.columns())
    with store.writing() as snapshot:
        manifest = snapshot.manifest
        types = ColumnTypes(manifest.columns)
        types.add(columns)
        staging = store.root / "segments" / f"ingest-{uuid.uuid4().hex[:16]}"
        spec = WriteSpec(str(staging), manifest, dict(manifest.columns),
                         store.write.segment_masks, store.write.segment_bytes,
                         manifest.index == "eager" if index is None else bool(index),
                         Conversion(options.dtype, options.scale))
        moved: list[Path] = []
        try:
            added = _write(parts, spec, columns, client, progress, total)
            moved = _move_in(staging, added, store.root / "segments")
            change = Change(added=added, columns=types.ordered(),
                            next_mask_id=manifest.next_mask_id + total)
            if replace_on:
                new = pa.table({k: v for k, (_, v) in columns.items()})
                change.deleted = replaced_rows(
                    snapshot, key_values(new, replace_on, types, manifest), types.ordered())
            committed = store.commit(snapshot, change)
        except BaseException:
            store.roll_back(moved)
            raise
        finally:
            remove_tree(staging)
        del snapshot
        store.finish_write()
    first = committed.next_mask_id - total
    return list(range(first, first + total)), change.rows_deleted()


def _write(parts: list[Partition], spec: WriteSpec, columns: dict[str, TypedColumn],
           client: Any, progress: ProgressFn | None, total: int) -> list[SegmentInfo]:
    """Run a writing task per partition; the segments they wrote, in partition order."""
    import dask

    if client is None:   # Dask's own scheduler: a partition at a time, so that an error
        written = []     # stops the ingest with no task left writing
        for p in parts:
            written.append(dask.compute(_task(p, spec, columns))[0])
            if progress is not None:
                progress(p.start + p.count, total)
    else:
        written = _on_cluster(client, parts, spec, columns, progress, total)
    return [info for infos in written for info in infos]


def _on_cluster(client: Any, parts: list[Partition], spec: WriteSpec,
                columns: dict[str, TypedColumn], progress: ProgressFn | None,
                total: int) -> list[list[SegmentInfo]]:
    """A task per partition on the cluster. When one fails, the tasks not started yet
    write nothing and the running ones are waited for, so that nothing writes after the
    caller removed what they wrote; Ctrl-C does not wait (the next writer removes what
    they leave)."""
    from distributed import Event, as_completed, wait

    spec = replace(spec, abort=f"masksearch-ingest-{uuid.uuid4().hex}")
    futures = client.compute([_task(p, spec, columns) for p in parts])
    where = {f.key: i for i, f in enumerate(futures)}
    written: list[list[SegmentInfo]] = [[] for _ in futures]
    done = 0
    try:
        for future in as_completed(futures):
            i = where[future.key]
            written[i] = _written(future)
            done += parts[i].count
            if progress is not None:
                progress(done, total)
    except BaseException as e:
        Event(spec.abort, client=client).set()
        if not isinstance(e, Exception):
            client.cancel(futures)
            raise
        wait(futures, timeout=600)
        if isinstance(e, _ClusterFailure):
            raise IngestError(f"the Dask cluster could not write the masks ({e}); nothing "
                              "was committed") from None
        raise      # a mask's own error raised on a worker, or the progress callback's
    return written


class _ClusterFailure(Exception):
    """A writing task failed for the cluster's reasons (a worker lost too often...)."""


def _written(future: Any) -> list[SegmentInfo]:
    try:
        result: list[SegmentInfo] = future.result()
    except MaskSearchError:
        raise          # bad pixels, a missing file: said as it was on the worker
    except Exception as e:
        raise _ClusterFailure(f"{type(e).__name__}: {e}") from e
    return result


def _task(part: Partition, spec: WriteSpec, columns: dict[str, TypedColumn]) -> Any:
    """The Dask task writing ``part``: its data computed where it runs, with its slice of
    the metadata."""
    import dask

    return dask.delayed(write_partition, pure=False)(
        part.data, replace(part, data=None), spec, _slice(columns, part.start, part.count))


def _slice(columns: dict[str, TypedColumn], start: int, count: int) -> dict[str, TypedColumn]:
    # Concatenated: a slice alone would pickle its whole buffers.
    return {name: (kind, pa.concat_arrays([values.slice(start, count)]))
            for name, (kind, values) in columns.items()}


def _move_in(staging: Path, added: list[SegmentInfo], segments: Path) -> list[Path]:
    """Move the written segments from the staging folder into ``segments`` (renames on one
    file system), made durable before the commit names them."""
    moved = []
    for info in added:
        target = segments / info.name
        os.replace(staging / "segments" / info.name, target)
        moved.append(target)
    fsync_path(segments)
    return moved
