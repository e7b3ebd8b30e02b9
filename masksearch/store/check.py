"""``check``: verify a whole database against its checksums and report what is damaged."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StoreError
from .agg_cache import DIRECTORY as AGGCACHE
from .files import Files, as_files
from .manifest import SegmentInfo, read_manifest
from .overlays import read_deleted, read_meta
from .segments import DELTA_GLOB, Segment


@dataclass(frozen=True)
class Problem:
    """One damaged file (and the masks it affects, where known)."""

    path: str
    message: str
    mask_ids: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.message if not self.mask_ids else \
            f"{self.message} [mask ids: {_ranges(self.mask_ids)}]"


@dataclass
class CheckReport:
    """What ``Database.check()`` found: ``ok`` is False when anything is damaged."""

    path: str
    segments: int = 0
    masks: int = 0
    files: int = 0
    problems: list[Problem] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)  # segments without checksums

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged_mask_ids(self) -> list[int]:
        return sorted({i for p in self.problems for i in p.mask_ids})

    def summary(self) -> str:
        lines = [f"checked {self.path}: {self.segments} segments, {self.masks} masks, "
                 f"{self.files} files"]
        lines += [f"DAMAGED: {p}" for p in self.problems]
        lines += [f"not verifiable (written before checksums): {s}" for s in self.unverifiable]
        if any("index" in p.message for p in self.problems):
            lines.append("a damaged index can be rebuilt from the pixels: "
                         f"masksearch index {self.path} --rebuild")
        lines.append("ok: no damage found" if self.ok else
                     f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} "
                     "found")
        return "\n".join(lines)


def _ranges(ids: Iterable[int]) -> str:
    ids = sorted(ids)
    out, start, prev = [], ids[0], ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(out)


def check_store(root: Path | Files) -> CheckReport:
    """Read and verify every file of the committed database at ``root`` (a local folder, or
    the ``Files`` of one on object storage: each of its files is read whole)."""
    files = as_files(root)
    report = CheckReport(files.label())
    try:
        manifest = read_manifest(files)
    except StoreError as e:
        report.problems.append(Problem(files.label("manifest.json"), str(e)))
        return report
    report.files += 1
    seen: set[int] = set()
    for info in manifest.segments:
        report.segments += 1
        report.masks += info.live
        segment = Segment(files.child("segments").child(info.name), whole_pixels=True)
        _check_segment(segment, info, manifest.next_mask_id, seen, report)
    cache = files.child(AGGCACHE)
    for name in cache.names("*.npz"):
        report.files += 1
        try:
            cache.read_checked_npz(name, "cached CHIs")
        except (StoreError, FileNotFoundError) as e:
            report.problems.append(Problem(cache.label(name), str(e)))
    return report


class _SegmentCheck:
    """The checks of one segment, each reporting what it finds damaged; later checks need
    what earlier ones verified (the mask ids come from verified metadata)."""

    def __init__(self, seg: Segment, info: SegmentInfo, report: CheckReport):
        self.seg, self.info, self.report = seg, info, report
        self.ids: tuple[int, ...] = ()   # the segment's mask ids, once its metadata is verified

    def damaged(self, path: str, error: Exception, ids: tuple[int, ...] | None = None) -> None:
        self.report.problems.append(Problem(path, str(error),
                                            self.ids if ids is None else ids))

    def description(self) -> bool:
        seg, path = self.seg, self.seg.files.label("segment.json")
        try:
            seg.info  # noqa: B018 - loading verifies segment.json
        except StoreError as e:
            self.damaged(path, e)
            return False
        self.report.files += 1
        if not seg.sealed:
            self.report.unverifiable.append(seg.files.label())
        elif seg.info["count"] != self.info.count or seg.info["dtype"] != self.info.dtype:
            self.damaged(path, StoreError(f"{path}: does not match the manifest"))
            return False
        return True

    def overlays(self) -> bool:
        """The deletion vector and rewritten metadata the manifest names, if any."""
        ok = True
        for spec, read in ((self.info.deleted, read_deleted), (self.info.meta, read_meta)):
            if spec is None:
                continue
            try:
                read(self.seg.files, spec, self.info.count)
                self.report.files += 1
            except StoreError as e:
                self.damaged(self.seg.files.label(spec["name"]), e)
                ok = False
        return ok

    def metadata(self, next_mask_id: int, seen: set[int]) -> bool:
        path = self.seg.files.label("meta.parquet")
        try:
            ids = self.seg.meta.column("mask_id").to_numpy()
            self.report.files += 1
            # Ids increase within a segment (an ingest of several dtypes interleaves
            # segments).
            if len(ids) != self.info.count or (len(ids) and (
                    ids[0] != self.info.first_mask_id or ids[-1] >= next_mask_id
                    or (np.diff(ids) <= 0).any() or seen.intersection(ids.tolist()))):
                raise StoreError(f"{path}: mask ids do not match the manifest")
        except StoreError as e:
            self.damaged(path, e)
            return False
        seen.update(ids.tolist())
        self.ids = tuple(int(i) for i in ids)
        return True

    def pixels(self) -> None:
        path = self.seg.files.label("pixels.arrow")
        whole = None   # the file's checksum failed: the damaged masks are found below
        try:
            if self.seg.sealed:
                self.seg.files.read_checked("pixels.arrow", self.seg.info["files"][
                    "pixels.arrow"], "pixels file", mapped=True)
            self.report.files += 1
        except StoreError as e:
            whole = e
        bad = []
        try:
            for row in range(self.info.count):
                try:
                    self.seg.pixels(row)
                except StoreError:
                    bad.append(self.ids[row])
        except StoreError as e:  # the file's structure is unreadable: every mask is affected
            self.damaged(path, e)
            return
        if bad:
            self.damaged(path, StoreError(f"{path}: {len(bad)} of {self.info.count} masks are "
                                          "damaged (checksum mismatch or undecodable)"),
                         tuple(bad))
        elif whole is not None:
            self.damaged(path, whole, ())

    def index(self) -> None:
        seg = self.seg
        try:
            if seg.has_full_index():
                seg.reload_index()
                seg.index  # noqa: B018 - loading verifies every index file
                self.report.files += 3
            else:
                for name in seg.files.names(DELTA_GLOB):
                    self.report.files += 1
                    seg.files.read_checked_npz(name, "index delta")
                seg.index  # noqa: B018 - the deltas must also fit the segment
        except (StoreError, FileNotFoundError) as e:
            self.damaged(getattr(e, "filename", None) or seg.files.label("chi.json"), e)


def _check_segment(seg: Segment, info: SegmentInfo, next_mask_id: int, seen: set[int],
                   report: CheckReport) -> None:
    check = _SegmentCheck(seg, info, report)
    if check.description() and check.metadata(next_mask_id, seen) and check.overlays():
        check.pixels()
        check.index()
