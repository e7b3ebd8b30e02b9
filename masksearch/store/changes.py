"""One statement's change to the committed state, made into the next manifest.

A change deletes rows (deletion vectors), rewrites segments' metadata, changes the columns,
adds new segments (ingest, upsert, compaction) and drops whole ones (compaction, or every
row deleted). ``next_manifest`` writes the new per-segment files and says which files the
new state no longer uses; the caller commits by writing the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import IngestError
from .manifest import Manifest, SegmentInfo
from .metadata import ARROW_TYPES
from .overlays import write_deleted, write_meta
from .snapshot import SegmentState, Snapshot


@dataclass
class Change:
    """What one statement changes. ``deleted``: segment name -> rows to delete;
    ``meta``: segment name -> its new metadata table (every row, deleted ones too)."""

    deleted: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, pa.Table] = field(default_factory=dict)
    columns: dict[str, str] | None = None
    defaults: dict | None = None
    added: list[SegmentInfo] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    next_mask_id: int | None = None

    def rows_deleted(self) -> int:
        return sum(len(np.unique(rows)) for rows in self.deleted.values())


@dataclass
class Outcome:
    """The manifest to commit, the files it no longer uses (relative to the root), and the
    files written for it (to remove if the commit does not happen)."""

    manifest: Manifest
    retire: list[str]
    written: list[Path]


def next_manifest(root: Path, snapshot: Snapshot, change: Change) -> Outcome:
    """The manifest after ``change``, its new per-segment files written (not yet committed)."""
    base = snapshot.manifest
    out = Outcome(base, [], [])
    infos: list[SegmentInfo] = []
    for state in snapshot.states:
        info = _changed(root, state, change, out)
        if info is not None:
            infos.append(info)
    out.manifest = replace(
        base, segments=(*infos, *change.added),
        columns=base.columns if change.columns is None else change.columns,
        defaults=base.defaults if change.defaults is None else change.defaults,
        next_mask_id=base.next_mask_id if change.next_mask_id is None else change.next_mask_id)
    return out


def _changed(root: Path, state: SegmentState, change: Change, out: Outcome) -> SegmentInfo | None:
    """``state``'s segment as the change leaves it (None: dropped whole)."""
    info, name = state.info, state.info.name
    directory = root / "segments" / name
    deleted = state.deleted
    if name in change.deleted:
        deleted = deleted.copy()
        deleted[np.asarray(change.deleted[name], np.int64)] = True
    if name in change.removed or deleted.all():
        out.retire.append(f"segments/{name}")
        return None
    if name in change.deleted and int(deleted.sum()) != int(state.deleted.sum()):
        spec = write_deleted(directory, deleted)
        out.written.append(directory / spec["name"])
        if info.deleted is not None:
            out.retire.append(f"segments/{name}/{info.deleted['name']}")
        info = replace(info, deleted=spec)
    if name in change.meta:
        spec = write_meta(directory, change.meta[name])
        out.written.append(directory / spec["name"])
        if info.meta is not None:
            out.retire.append(f"segments/{name}/{info.meta['name']}")
        info = replace(info, meta=spec)
    return info


def replaced_rows(snapshot: Snapshot, keys: pa.Table, types: dict[str, str]) -> dict[str, np.ndarray]:
    """Per segment, the live rows whose values of ``keys``' columns equal those of a row of
    ``keys`` (an upsert's new masks); NULL equals NULL."""
    table = snapshot.table
    names = list(keys.column_names)
    for name in names:
        if name not in types:
            raise IngestError(f"replace_on: no column {name!r} (the columns are "
                              f"{', '.join(types)})")
        if types[name] == "box":
            raise IngestError(f"replace_on: {name!r} is a box column; keys are numbers, "
                              "text or booleans")
    if not table.num_rows:
        return {}
    old = pa.table({f"k{i}": key_text(table.column(n), types[n]) for i, n in enumerate(names)})
    new = pa.table({f"k{i}": key_text(keys.column(n), types[n]) for i, n in enumerate(names)})
    old = old.append_column("_i", pa.array(np.arange(table.num_rows)))
    hit = old.join(new.group_by(new.column_names).aggregate([]), keys=new.column_names,
                   join_type="left semi").column("_i").to_numpy()
    segs = table.column("_seg").to_numpy()[hit]
    rows = table.column("_row").to_numpy()[hit]
    return {snapshot.segments[k].directory.name: rows[segs == k].astype(np.int64)
            for k in np.unique(segs).tolist()}


_NULL_KEY = "\x00null"


def key_text(values: pa.ChunkedArray | pa.Array, kind: str) -> pa.Array:
    """Key values as text in the column's type, NULL as a marker no text equals."""
    import pyarrow.compute as pc  # here: opening a database needs no Arrow compute

    typed = values.cast(ARROW_TYPES[kind]) if kind != "null" else pa.nulls(len(values))
    return pc.fill_null(typed.cast(pa.string()), _NULL_KEY)
