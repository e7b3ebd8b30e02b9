"""The Python API: ``connect`` a database, ``ingest`` masks, ``query`` them."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from .exec.control import QueryControl
from .exec.executor import execute
from .lang.binder import bind
from .lang.notices import ValueSpan, query_notices
from .lang.parser import parse
from .plan.planner import plan
from .result import QueryStats, Result
from .store.check import CheckReport, check_store
from .store.sources import mask_sources
from .store.store import Store


class Database:
    """An open masksearch database (a directory)."""

    def __init__(self, store: Store):
        self._store = store

    @property
    def path(self) -> str:
        return str(self._store.root)

    def ingest(self, masks, *, image_id=None, model_id=None, mask_type=None,
               metadata: dict | None = None,
               progress: Callable[[int, int], None] | None = None,
               index: bool | None = None) -> list[int]:
        """Add masks with their metadata atomically and return their new mask ids.

        ``masks``: an (N, H, W) array, a sequence of 2-D arrays, or PNG/NPY paths, folders or
        globs. ``image_id`` (required for arrays; file stems by default for files),
        ``model_id`` and ``mask_type``: one value for all masks or one per mask.
        ``metadata``: column name -> one value per mask (numbers, strings, booleans, or
        boxes given as an (N, 4) integer array or 4-tuples/None). ``index``: build the CHIs
        now (default: as the database was created, eager or lazy).
        """
        sources = mask_sources(masks)
        if image_id is None and any(s.path is None for s in sources):
            from .errors import IngestError

            raise IngestError("image_id is required when ingesting arrays")
        return self._store.ingest(sources, image_id=image_id, model_id=model_id,
                                  mask_type=mask_type, metadata=metadata, progress=progress,
                                  index=index)

    def build_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build every CHI that lazy indexing has not built yet; returns how many."""
        return self._store.build_index(progress)

    def check(self) -> CheckReport:
        """Read every file of the database and verify it against its checksums (pixels of
        every mask, metadata, index); ``report.ok`` is False and ``report.problems`` names
        the damaged files and mask ids when anything is damaged."""
        return check_store(self._store.root)

    def rebuild_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild every CHI from the pixels (after ``check`` found a damaged index); returns
        how many masks were indexed. Fails naming the mask if pixels are damaged."""
        return self._store.build_index(progress, rebuild=True)

    def query(self, sql: str, *, use_index: bool = True, timeout: float | None = None,
              progress: Callable[[int, int], None] | None = None) -> Result:
        """Run one statement; ``use_index=False`` forces the brute-force path (same results).

        ``timeout`` (seconds) stops the query with ``QueryTimeout``; Ctrl-C (KeyboardInterrupt)
        stops it too. ``progress(done, total)`` is told of masks counted during verification.
        Neither leaves anything behind: queries never write, except the CHIs lazy indexing
        builds, which land whole or not at all.
        """
        self._store.refresh()
        bound = bind(parse(sql), sql, self._store.columns())
        logical = plan(bound)
        ctl = QueryControl(timeout=timeout, progress=progress)
        if not bound.explain:
            return execute(logical, self._store, use_index=use_index, query_control=ctl)
        stats = QueryStats(used_index=use_index)
        lines = logical.describe().splitlines()
        if bound.analyze:
            result = execute(logical, self._store, use_index=use_index, query_control=ctl)
            stats = result.stats
            lines = logical.describe(stats.operators).splitlines()
            lines += ["", f"{len(result)} rows", *_stats_lines(stats)]
        return Result(pa.table({"plan": lines}), stats)

    def explain(self, sql: str) -> str:
        """The logical plan of a statement as text."""
        self._store.refresh()
        return plan(bind(parse(sql), sql, self._store.columns())).describe()

    def notices(self, sql: str) -> list[str]:
        """Advice on a statement that probably does not mean what it says (e.g. a range
        ``(0.6, 1.0)`` over masks whose largest value is 1.0); empty when all is well."""
        self._store.refresh()
        bound = bind(parse(sql), sql, self._store.columns())
        return query_notices(bound, self._value_spans())

    def _value_spans(self) -> list[ValueSpan]:
        """Per pixel dtype, the smallest and largest value of the masks that have a CHI."""
        spans: dict[str, list[float]] = {}
        for seg in self._store.segments:
            stats = seg.index.stats[seg.index.built]
            stats = stats[stats[:, 0] <= stats[:, 1]]   # all-NaN masks have no values
            if len(stats):
                lo, hi = spans.get(seg.dtype.name, [np.inf, -np.inf])
                spans[seg.dtype.name] = [min(lo, float(stats[:, 0].min())),
                                         max(hi, float(stats[:, 1].max()))]
        return [ValueSpan(k, lo, hi) for k, (lo, hi) in spans.items()]

    def mask(self, mask_id: int) -> np.ndarray:
        """The pixels of one mask, in their stored dtype."""
        self._store.refresh()
        segment, row = self._store.locate(int(mask_id))
        return segment.pixels(row)

    def columns(self) -> dict[str, str]:
        """Queryable columns and their types."""
        self._store.refresh()
        return self._store.columns()

    def info(self) -> dict:
        """Counts, shapes, dtypes and sizes of the database."""
        self._store.refresh()
        table = self._store.table()
        segments = self._store.segments
        dtypes: dict[str, int] = {}
        for s in self._store.manifest.segments:
            dtypes[s.dtype] = dtypes.get(s.dtype, 0) + s.count
        shapes: dict[str, int] = {}
        if table.num_rows:
            h = table.column("height").to_numpy()
            w = table.column("width").to_numpy()
            pairs, counts = np.unique(np.stack([h, w], 1), axis=0, return_counts=True)
            shapes = {f"{a}x{b}": int(c) for (a, b), c in zip(pairs, counts, strict=True)}
        pixel_bytes = sum(s.pixel_bytes() for s in segments)
        indexed = sum(int(s.index.built.sum()) for s in segments)
        index_bytes = sum(s.index_bytes() for s in segments)
        m = self._store.manifest
        return {"path": self.path, "masks": table.num_rows, "segments": len(segments),
                "dtypes": dtypes, "shapes": shapes, "columns": self._store.columns(),
                "cell_size": m.cell_size, "codec": m.codec, "index_mode": m.index,
                "indexed_masks": indexed, "pixel_bytes": pixel_bytes,
                "index_bytes": index_bytes,
                "index_share": index_bytes / pixel_bytes if pixel_bytes else 0.0}

    def __repr__(self) -> str:
        return f"<masksearch.Database {self.path}>"


def _stats_lines(s: QueryStats) -> list[str]:
    return [f"masks: {s.masks_total}",
            f"rejected by metadata: {s.rejected_by_metadata}",
            f"accepted by the index: {s.accepted_by_index}",
            f"rejected by the index: {s.rejected_by_index}",
            f"verified (pixels read): {s.verified} masks, {s.bytes_read} bytes",
            f"CHIs built: {s.chis_built}",
            f"time: {s.seconds * 1e3:.1f} ms" + ("" if s.used_index else " (index off)")]


def connect(path: str | os.PathLike, *, cell_size: int | None = None,
            bin_edges: dict | None = None, codec: str | None = None,
            index: str | None = None) -> Database:
    """Open the database at ``path``, creating it (with these settings) if absent.

    ``index="lazy"`` defers the CHIs: each mask gets its CHI when a query first reads it
    (or from ``build_index()``); ``"eager"`` (default) builds them at ingest.
    """
    return Database(Store(path, cell_size=cell_size, bin_edges=bin_edges, codec=codec,
                          index=index))
