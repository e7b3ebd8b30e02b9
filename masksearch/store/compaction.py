"""Compaction: small and mostly-deleted segments rewritten into full ones.

Many small ingests (an inference loop committing each batch) leave many small segments, and
deletes leave rows nobody reads; both cost queries time. Compaction reads the live masks of
such segments (in mask id order, ids kept), writes them into new segments of the usual size
with their CHIs, and commits the swap in one manifest rename; the old segments are retired
and removed once no reader's snapshot uses them. It also drops cached CHIs of aggregated
masks whose groups can no longer exist.

After every commit, compaction runs by itself when one pixel type has ``AUTO_SEGMENTS`` small
segments of about the same size (a size tier is a power of 4), or small segments holding a
full segment's worth of masks together, or a segment with half its rows deleted: each mask
is rewritten about once per tier on its way to a full segment, not once per ingest.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..index.chi import SegmentIndex, chi_offsets
from .changes import Change
from .durable import remove_tree, replace
from .manifest import Manifest, SegmentInfo
from .segments import Segment, write_copied_segment, write_segment
from .snapshot import Snapshot
from .tiles import tile_codec, writes_tiles
from .writer import segment_edges

SMALL = 0.5            # a segment holding under half a full segment's masks is small
MOSTLY_DELETED = 0.5   # a segment with at least half its rows deleted is rewritten
AUTO_SEGMENTS = 8      # small segments of one pixel type and size tier that start compaction


@dataclass
class CompactionResult:
    """What a compaction did."""

    segments_before: int = 0
    segments_after: int = 0
    masks_rewritten: int = 0
    cached_chis_removed: int = 0


def chosen(manifest: Manifest, segment_masks: int, auto: bool) -> list[list[SegmentInfo]]:
    """The groups of segments (one pixel type each) to rewrite together. ``auto``: only
    when a size tier is full or a segment is mostly deleted; else every small or partly
    deleted segment."""
    groups = []
    for dtype in sorted({s.dtype for s in manifest.segments}):
        segments = [s for s in manifest.segments if s.dtype == dtype]
        picked = _auto_pick(segments, segment_masks) if auto else \
            [s for s in segments if s.live < segment_masks or s.deleted is not None]
        if len(picked) >= 2 or any(s.deleted is not None for s in picked):
            groups.append(picked)
    return groups


def _auto_pick(segments: list[SegmentInfo], segment_masks: int) -> list[SegmentInfo]:
    """Mostly deleted segments; the small segments of every full size tier; and all small
    segments once together they fill a segment (so small ones never pile up across tiers)."""
    mostly_deleted = [s for s in segments if s.live <= s.count * (1 - MOSTLY_DELETED)]
    small = [s for s in segments
             if s.live < segment_masks * SMALL and s not in mostly_deleted]
    if sum(s.live for s in small) >= segment_masks:
        return mostly_deleted + small
    tiers: dict[int, list[SegmentInfo]] = {}
    for s in small:
        tiers.setdefault(int(math.log(max(s.live, 1), 4)), []).append(s)
    full_tiers = [s for members in tiers.values() if len(members) >= AUTO_SEGMENTS
                  for s in members]
    return mostly_deleted + full_tiers


def rewrite(root: Path, snapshot: Snapshot, group: list[SegmentInfo], segment_masks: int,
            written: list[Path]) -> list[SegmentInfo]:
    """Write the live masks of ``group`` into new full segments (listed in ``written`` as
    they are made, for the caller to remove if the commit does not happen)."""
    names = {s.name for s in group}
    positions = [k for k, s in enumerate(snapshot.segments) if s.directory.name in names]
    table = snapshot.rows_of(positions).sort_by("mask_id")
    copy = _can_copy(snapshot, positions)
    new = []
    for chunk in _chunks(table, segment_masks):
        segs = chunk.column("_seg").to_numpy()
        rows = chunk.column("_row").to_numpy()
        meta = chunk.drop_columns(["_seg", "_row"])
        name = f"seg-{uuid.uuid4().hex[:16]}"
        tmp = root / "segments" / f"tmp-{name}"
        written.append(tmp)
        if copy:
            _copy_masks(tmp, snapshot, segs, rows, meta)
        else:
            _rewrite_masks(tmp, snapshot, segs, rows, meta)
        replace(tmp, root / "segments" / name)
        written.append(root / "segments" / name)
        new.append(SegmentInfo(name, len(rows), group[0].dtype,
                               int(meta.column("mask_id")[0].as_py())))
    return new


def _can_copy(snapshot: Snapshot, positions: list[int]) -> bool:
    """Whether the masks can move as they are, compressed, with their CHIs: every segment
    has checksums, the database's codec, pixel layout (``outdated``) and cell size, the
    same bin edges, a full index."""
    manifest = snapshot.manifest
    segments = [snapshot.segments[k] for k in positions]
    first = segments[0].info
    return all(seg.sealed and seg.has_full_index() and seg.info["codec"] == manifest.codec
               and not outdated(seg, manifest)
               and seg.info["cell_size"] == manifest.cell_size
               and seg.info["edges"] == first["edges"] for seg in segments)


def outdated(segment: Segment, manifest: Manifest) -> bool:
    """Whether the segment's pixels are not in the layout new segments get: whole-mask
    blobs where the database writes tiles (``tiles.writes_tiles``), or tiles of another
    codec than the one now chosen for its dtype."""
    if not writes_tiles(manifest.codec):
        return segment.tiles is not None
    return segment.tiles != tile_codec(segment.dtype)


def upgrade_groups(snapshot: Snapshot) -> list[list[SegmentInfo]]:
    """The segments (grouped by pixel type) whose pixels ``outdated`` says to rewrite."""
    manifest = snapshot.manifest
    groups = []
    for dtype in sorted({s.dtype for s in manifest.segments}):
        old = [info for info, seg in zip(manifest.segments, snapshot.segments, strict=True)
               if info.dtype == dtype and outdated(seg, manifest)]
        if old:
            groups.append(old)
    return groups


def _copy_masks(directory: Path, snapshot: Snapshot, segs: np.ndarray, rows: np.ndarray,
                meta: pa.Table) -> None:
    """A segment of these masks' compressed bytes and CHIs, read as stored (verified)."""
    blobs, digests, counts, eq, stats = [], [], [], [], []
    indexes: dict[int, SegmentIndex] = {}    # decoded once per segment, not per mask
    for k, r in zip(segs.tolist(), rows.tolist(), strict=True):
        seg = snapshot.segments[k]
        index = indexes[k] if k in indexes else indexes.setdefault(k, seg.index)
        blobs.append(seg.blob(r))
        digests.append(seg.info["blobs_xxh64"][r])
        counts.append(index.counts[index.offsets[r]:index.offsets[r + 1]])
        eq.append(index.eq[r])
        stats.append(index.stats[r])
    first = snapshot.segments[int(segs[0])].index_overview
    heights = meta.column("height").to_numpy().astype(np.int64)
    widths = meta.column("width").to_numpy().astype(np.int64)
    offsets = chi_offsets(heights, widths, first.cell, len(first.edges))
    merged = np.concatenate(counts).astype(np.result_type(*(c.dtype for c in counts)))
    index = SegmentIndex(first.cell, first.edges, merged, offsets, np.stack(eq),
                         np.stack(stats), heights, widths, np.ones(len(rows), bool))
    source = snapshot.segments[int(segs[0])]
    write_copied_segment(directory, source.dtype, blobs, digests, meta, index,
                         snapshot.manifest.codec, source.tiles)


def _rewrite_masks(directory: Path, snapshot: Snapshot, segs: np.ndarray, rows: np.ndarray,
                   meta: pa.Table) -> None:
    """A segment of these masks decoded and written anew, with new CHIs."""
    manifest = snapshot.manifest
    masks = [snapshot.segments[k].pixels(int(r)) for k, r in zip(segs, rows, strict=True)]
    write_segment(directory, masks, meta, segment_edges(manifest, masks), manifest.cell_size,
                  manifest.codec, build_index=True)


def _chunks(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def compaction_change(root: Path, snapshot: Snapshot, groups: list[list[SegmentInfo]],
                      segment_masks: int, written: list[Path]) -> tuple[Change, int]:
    """The change swapping ``groups`` for their rewritten segments, and masks rewritten."""
    change = Change()
    count = 0
    for group in groups:
        change.added += rewrite(root, snapshot, group, segment_masks, written)
        change.removed |= {s.name for s in group}
        count += sum(s.live for s in group)
    return change, count


def remove_written(written: list[Path]) -> None:
    for path in written:
        remove_tree(path)
