"""The Python API: ``connect`` a database, ``ingest`` masks, ``query`` them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

from .errors import StoreError
from .store.index_cache import index_cache, set_index_cache_budget
from .store.numpy_arrow import array_numpy
from .store.store import Store, WriteSettings

# The query engine (parser, planner, executor), ingest, changes, checks and pictures load in
# the methods that use them: opening a database (the shell's first prompt) needs none of them.
if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .exec.control import QueryControl
    from .exec.executor import FragmentRunner
    from .exec.groups.prepare import PreparedAggregates
    from .exec.settings import ExecSettings
    from .ingest.stream import MaskWriter
    from .lang import ast
    from .lang.binder import BoundQuery
    from .plan.physical import PhysicalPlan
    from .render.selection import RangeArg
    from .render.stored import Renderer, RoiArg
    from .result import Result
    from .store.check import CheckReport
    from .store.compaction import CompactionResult
    from .store.copy import CopyResult
    from .store.location import Location


class MaskIds(list[int]):
    """The mask ids an ingest gave its masks, in order; ``replaced``: how many masks it
    replaced (``replace_on``)."""

    def __init__(self, ids: list[int], replaced: int = 0) -> None:
        super().__init__(ids)
        self.replaced = replaced


class Database:
    """An open masksearch database (a directory, or a prefix on object storage, read-only).
    ``close()`` releases it; as a context manager (``with ms.connect(path) as db:``) it is
    closed on leaving the block."""

    def __init__(self, store: Store, executor: object = None) -> None:
        self._open_store: Store | None = store
        self._path = store.url
        # Workers open the database themselves: a local path, or the URL and its options.
        self._runner = _runner(executor, store.address)
        self._renderer: Renderer | None = None

    @property
    def _store(self) -> Store:
        """The store, while the database is open; every method goes through here."""
        store = self._open_store
        if store is None:
            raise StoreError(f"the database at {self._path} is closed")
        return store

    @property
    def path(self) -> str:
        """The database's folder, or its URL (``s3://bucket/prefix``)."""
        return self._path

    @property
    def read_only(self) -> bool:
        """Whether this connection refuses writes (``connect(path, read_only=True)``)."""
        return self._store.read_only

    @property
    def closed(self) -> bool:
        return self._open_store is None

    def close(self) -> None:
        """Release what this connection holds (open segment files and their memory maps,
        the index and metadata read so far, the cache of aggregated masks' CHIs); later
        calls raise ``StoreError``. Closing again does nothing. Results already returned
        stay valid."""
        if self._open_store is not None:
            self._open_store.close()
        self._open_store = None
        if self._runner is not None:
            self._runner.close()     # the Dask client, if this connection made it

    def __enter__(self) -> Database:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def store(self) -> Store:
        """The storage layer (segments, snapshots, the writer lock), for extensions such as
        the DuckDB functions."""
        return self._store

    def ingest(self, masks: object, *, image_id: object = None, model_id: object = None,
               mask_type: object = None, metadata: object = None, key: str | None = None,
               allow_missing: bool = False, box_format: str = "xyxy",
               dtype: str | None = None, scale: float | None = None,
               progress: Callable[[int, int | None], None] | None = None,
               index: bool | None = None,
               replace_on: Sequence[str] | str | None = None) -> MaskIds:
        """Add masks with their metadata in one atomic commit and return their new mask ids;
        a refused ingest leaves every file of the database as it was.

        ``masks``: an (N, H, W) or (N, 1, H, W) array or tensor (anything with ``__array__``
        or ``__dlpack__``), a sequence of 2-D arrays or tensors, PNG/NPY/NPZ paths, folders or
        globs, or a source such as ``masksearch.from_coco(path)``.
        ``image_id`` (required for arrays; each file's stem by default), ``model_id`` and
        ``mask_type``: one value for all masks or one per mask (or columns of the metadata).
        ``metadata``: a dict of columns, a pandas DataFrame, a pyarrow Table, or a CSV or
        Parquet file. Files are matched to its rows by the ``key`` column (default
        ``"file"``: a file's path, name or stem), never by position; every file needs a row
        unless ``allow_missing`` (its columns are then NULL). Arrays are matched by position.
        Boxes are given as ``box_format`` ``"xyxy"`` (x0, y0, x1, y1) or ``"xywh"``.
        ``dtype="float32"`` stores float64 masks rounded to float32; ``scale=255`` stores
        ``pixels / 255`` as float32. ``index``: build the CHIs now (default: as the database
        was created, eager or lazy). ``replace_on=["image_id", "model_id"]`` makes it an
        upsert: the same commit deletes the masks that share those columns' values with a new
        mask (a model re-run replacing its masks; NULL matches NULL); the result's
        ``replaced`` says how many.
        """
        from .ingest.pipeline import IngestOptions, prepare

        options = IngestOptions(image_id, model_id, mask_type, metadata, key, allow_missing,
                                box_format, dtype, scale)
        keys = (replace_on,) if isinstance(replace_on, str) else tuple(replace_on or ())
        known = {name.lower(): name for name in self._store.columns()}
        keys = tuple(known.get(k.lower(), k) if isinstance(k, str) else k for k in keys)
        from .ingest.cluster import ingest_collection, is_dask_collection

        if is_dask_collection(masks):
            ids, replaced = ingest_collection(self._store, masks, options,
                                              client=self._client(), progress=progress,
                                              index=index, replace_on=keys)
            return MaskIds(ids, replaced)
        self._store.refresh()
        prepared = prepare(masks, options, self._store.columns(),
                           self._store.write.segment_masks)
        ids, replaced = self._store.ingest(prepared.batches, progress=progress, index=index,
                                           total=prepared.total, replace_on=keys)
        return MaskIds(ids, replaced)

    def _client(self) -> object:
        """The Dask client that runs this connection's work: its executor's, else the
        default client of this process, if any (None: Dask's own scheduler)."""
        client = getattr(self._runner, "client", None)
        if client is not None:
            return client
        import sys

        if "distributed" not in sys.modules:
            return None
        from distributed import get_client

        try:
            return get_client()
        except ValueError:
            return None

    def writer(self, *, image_id: object = None, model_id: object = None,
               mask_type: object = None, commit_every: int | None = None,
               allow_missing: bool = False, box_format: str = "xyxy",
               dtype: str | None = None, scale: float | None = None,
               index: bool | None = None) -> MaskWriter:
        """A streaming writer: ``with db.writer(model_id="m1") as w: w.add(masks,
        image_id=ids)``. Batches fill whole segments; the block commits once at its end (or
        every ``commit_every`` masks); an exception or Ctrl-C inside it commits nothing of
        what was added since the last commit. The writer lock is held for the block."""
        from .ingest.pipeline import IngestOptions
        from .ingest.stream import MaskWriter

        options = IngestOptions(image_id, model_id, mask_type, None, None, allow_missing,
                                box_format, dtype, scale)
        return MaskWriter(self._store, options, commit_every, index)

    def add_metadata(self, metadata: object, key: str = "image_id", *,
                     allow_missing: bool = False, box_format: str = "xyxy") -> int:
        """Join the columns of ``metadata`` (a dict of columns, DataFrame, Arrow table, CSV
        or Parquet file) to the masks by ``key`` in one atomic commit; returns how many
        masks got values. New columns are added, existing ones must keep their type; every
        key must match a mask (unless ``allow_missing``) and appear once."""
        from .mutate.annotate import add_metadata

        return add_metadata(self._store, metadata, key, allow_missing=allow_missing,
                            box_format=box_format)

    def compact(self) -> CompactionResult:
        """Rewrite small and partly deleted segments into full ones, in one atomic commit;
        their files are removed once no open connection reads them. (Commits compact by
        themselves when too many small segments pile up.)"""
        return self._store.compact()

    def upgrade(self) -> CompactionResult:
        """Rewrite segments written before pixels were stored in tiles (so verification
        decodes only the tiles the index cannot settle) into the current layout, in one
        atomic commit, as ``compact`` does; answers stay the same. Databases of older
        layouts are read and answered as they are: this only makes them faster."""
        return self._store.upgrade()

    def build_index(self, progress: Callable[[int, int | None], None] | None = None) -> int:
        """Build every CHI that lazy indexing has not built yet; returns how many."""
        return self._store.build_index(progress)

    def prepare_aggregates(self, group_by: str | Sequence[str] = "image_id",
                           kinds: str | Sequence[str] = ("intersect", "union"), *,
                           where: str | None = None,
                           settings: ExecSettings | None = None) -> PreparedAggregates:
        """Compute and store the CHIs of every group's aggregated masks (``kinds`` of
        intersect, union, mean) for the groups of ``GROUP BY group_by`` (of the masks
        satisfying ``where``, SQL text), like a materialized view: queries over those groups'
        aggregated masks (IoU, say) are then bounded from them, often exactly, without
        reading a pixel. Later changes never make an answer wrong: a group whose members
        changed (ingest, DELETE, UPDATE of its key) is bounded from its members as before
        until it is prepared again; preparing again computes only the groups without
        stored CHIs. Returns what was done (``PreparedAggregates``)."""
        from .exec.groups.prepare import preparation_sql, prepare

        cols, ks, sql = preparation_sql(group_by, kinds, where)
        store = self._store
        with store.write_lock():
            store.refresh()
            physical = _planned(sql, tuple(store.columns().items()))
            store.aggregate_cache.reload()
            return prepare(physical, store.snapshot(), store.aggregate_cache, cols, ks,
                           where, settings)

    def check(self) -> CheckReport:
        """Read every file of the database and verify it against its checksums (pixels of
        every mask, metadata, index); ``report.ok`` is False and ``report.problems`` names
        the damaged files and mask ids when anything is damaged."""
        from .store.check import check_store

        return check_store(self._store.files)

    def copy_to(self, dest: str | os.PathLike[str], *,
                storage_options: dict[str, object] | None = None,
                progress: Callable[[int, int], None] | None = None) -> CopyResult:
        """Copy the database as it is now to ``dest``: a new local folder, or a new prefix on
        object storage (``s3://bucket/prefix``, with ``storage_options`` as ``connect``
        takes them). Files are verified as they are copied, the segments go first and the
        manifest last, so no database appears at ``dest`` until the copy is complete; a
        failed copy removes what it wrote. ``dest`` must be empty or not exist: a copy
        never overwrites. ``progress(bytes_done, bytes_total)`` is told how far it got."""
        from .store.copy import copy_database
        from .store.files import files_at
        from .store.location import location_of

        store = self._store
        store.refresh()
        snapshot = store.snapshot()   # this connection's reader registration keeps its files
        target = files_at(location_of(dest, storage_options))
        return copy_database(snapshot, store.files, target, progress)

    def rebuild_index(self,
                      progress: Callable[[int, int | None], None] | None = None) -> int:
        """Rebuild every CHI from the pixels (after ``check`` found a damaged index); returns
        how many masks were indexed. Fails naming the mask if pixels are damaged."""
        return self._store.build_index(progress, rebuild=True)

    def query(self, sql: str, *, use_index: bool = True, timeout: float | None = None,
              progress: Callable[[int, int], None] | None = None,
              settings: ExecSettings | None = None,
              control: QueryControl | None = None) -> Result:
        """Run one statement; ``use_index=False`` forces the brute-force path (same results).

        ``timeout`` (seconds) stops the query with ``QueryTimeout``; Ctrl-C (KeyboardInterrupt)
        stops it too. ``progress(done, total)`` is told of masks counted during verification.
        Neither leaves anything behind: queries never write, except the CHIs lazy indexing
        builds, which land whole or not at all. ``settings`` tunes the executor (tests and
        benchmarks). ``control``, instead of ``timeout`` and ``progress``, lets another thread
        cancel the query (``control.cancel()``) and carries its timeout and progress.
        """
        import pyarrow as pa

        from .exec.control import QueryControl
        from .exec.executor import execute
        from .exec.stats import QueryStats
        from .lang.parser import parse
        from .result import Result

        control = control or QueryControl(timeout=timeout, progress=progress)
        stmt = parse(sql)
        if _changes_data(stmt):
            return self._change(sql, stmt, use_index, control, settings)
        physical = self._plan(sql)
        bound = physical.query
        if bound.explain and not bound.analyze:
            return Result(pa.table({"plan": physical.describe().splitlines()}),
                          QueryStats(used_index=use_index))
        store = self._store
        table, stats = execute(physical, store.snapshot(), store.aggregate_cache,
                               use_index=use_index, control=control, settings=settings,
                               read_only=store.read_only, runner=self._runner)
        if not bound.explain:
            return Result(table, stats, database=self, query=bound)
        lines = [*physical.describe(stats.operators).splitlines(), "",
                 f"{table.num_rows} rows", *stats.lines()]
        return Result(pa.table({"plan": lines}), stats)

    def _change(self, sql: str, stmt: ast.Change | ast.Explain, use_index: bool,
                control: QueryControl,
                settings: ExecSettings | None) -> Result:
        """DELETE, UPDATE, ALTER TABLE (or EXPLAIN of one): one row, ``rows_affected``."""
        import pyarrow as pa

        from .exec.stats import QueryStats
        from .lang import ast
        from .lang.mutations import bind_change
        from .mutate.statements import describe_change, run_change
        from .result import Result

        store = self._store
        if isinstance(stmt, ast.Explain) and not stmt.analyze:
            store.refresh()
            bound = bind_change(stmt, sql, store.columns())
            return Result(pa.table({"plan": describe_change(bound)}),
                          QueryStats(used_index=use_index))
        outcome = run_change(store, stmt, sql, use_index=use_index, control=control,
                             settings=settings, runner=self._runner)
        if isinstance(stmt, ast.Explain):
            return Result(pa.table({"plan": describe_change(outcome.bound, outcome)}),
                          outcome.stats)
        return Result(pa.table({"rows_affected": pa.array([outcome.rows_affected],
                                                          pa.int64())}), outcome.stats)

    def _plan(self, sql: str) -> PhysicalPlan:
        self._store.refresh()
        return _planned(sql, tuple(self._store.columns().items()))

    def _bind(self, sql: str) -> BoundQuery:
        return self._plan(sql).query

    def explain(self, sql: str) -> str:
        """The plan of a statement as text."""
        from .lang.mutations import bind_change
        from .lang.parser import parse
        from .mutate.statements import describe_change

        stmt = parse(sql)
        if _changes_data(stmt):
            self._store.refresh()
            return "\n".join(describe_change(bind_change(stmt, sql, self._store.columns())))
        return self._plan(sql).describe()

    def notices(self, sql: str) -> list[str]:
        """Advice on a statement that probably does not mean what it says (e.g. a range
        ``(0.6, 1.0)`` over masks whose largest value is 1.0); empty when all is well."""
        from .lang.notices import ValueSpan, query_notices
        from .lang.parser import parse

        if _changes_data(parse(sql)):
            return []
        bound = self._bind(sql)
        spans = self._store.snapshot().value_spans()
        return query_notices(bound, [ValueSpan(k, lo, hi) for k, (lo, hi) in spans.items()])

    def mask(self, mask_id: int) -> np.ndarray:
        """The pixels of one mask, in their stored dtype."""
        self._store.refresh()
        segment, row = self._store.snapshot().locate(int(mask_id))
        return segment.pixels(row)

    # --- pictures (masksearch.render) -------------------------------------------------------
    @property
    def _pictures(self) -> Renderer:
        store = self._store
        if self._renderer is None or self._renderer.store is not store:
            from .render.stored import Renderer

            self._renderer = Renderer(store)
        return self._renderer

    @property
    def image_root(self) -> str | None:
        """The folder relative ``image_path`` values are read from (an absolute path, kept
        in the database's ``settings.json``), or None. Assign a folder to set it (relative
        to the current directory), None to clear it; read-only connections cannot."""
        return self._pictures.image_root

    @image_root.setter
    def image_root(self, folder: str | os.PathLike[str] | None) -> None:
        self._pictures.set_image_root(folder)

    def render(self, mask_id: int, roi: RoiArg = None, range: RangeArg = None,
               size: int | tuple[int, int] | None = None, *, legend: bool = True,
               confined: bool = False) -> PILImage:
        """A picture of one mask (RGB ``PIL.Image``): over its source image when its
        ``image_path`` names a file (under ``image_root``; without a root, and unless
        ``confined``, a path on this machine), else alone; float maps in a perceptual colormap, label
        maps in a class palette, binary masks tinted; ``roi`` framed (a box column's name,
        ``'full'`` or (x0, y0, x1, y1)); the pixels in ``range`` (``'(0.6, 1.0]'`` or
        (lo, hi) meaning (lo, hi]) and the ROI outlined. ``size``: None (native), the
        longest side, or (w, h); ``legend`` adds a strip of 30 px under the picture with the
        value span and the count. See docs/pictures.md."""
        return self._pictures.render(mask_id, roi, range, size, legend=legend,
                                     confined=confined)

    def render_png(self, mask_id: int, roi: RoiArg = None, range: RangeArg = None,
                   size: int | tuple[int, int] | None = None, *, legend: bool = True,
                   confined: bool = False) -> bytes:
        """``render(...)`` as PNG bytes, cached per database state and arguments."""
        return self._pictures.render_png(mask_id, roi, range, size, legend=legend,
                                         confined=confined)

    def columns(self) -> dict[str, str]:
        """Queryable columns and their types."""
        self._store.refresh()
        return self._store.columns()

    def mask_count(self) -> int:
        """The number of masks, from the manifest alone (``info()`` reads every segment)."""
        self._store.refresh()
        return sum(s.live for s in self._store.manifest.segments)

    def info(self) -> dict:
        """Counts, shapes, dtypes and sizes of the database."""
        self._store.refresh()
        table = self._store.table()
        segments = self._store.segments
        dtypes: dict[str, int] = {}
        for s in self._store.manifest.segments:
            dtypes[s.dtype] = dtypes.get(s.dtype, 0) + s.live
        shapes: dict[str, int] = {}
        if table.num_rows:
            h = array_numpy(table.column("height"))
            w = array_numpy(table.column("width"))
            pairs, counts = np.unique(np.stack([h, w], 1), axis=0, return_counts=True)
            shapes = {f"{a}x{b}": int(c) for (a, b), c in zip(pairs, counts, strict=True)}
        pixel_bytes = sum(s.pixel_bytes() for s in segments)
        snapshot = self._store.snapshot()
        indexed = sum(int(state.segment.index_overview.built[~state.deleted].sum())
                      for state in snapshot.states)
        index_bytes = sum(s.index_bytes() for s in segments)
        memory = [state.segment.index_memory() for state in snapshot.states]
        held, decoded = sum(h for h, _ in memory), sum(d for _, d in memory)
        cache = index_cache()
        m = self._store.manifest
        return {"path": self.path, "masks": table.num_rows, "segments": len(segments),
                "dtypes": dtypes, "shapes": shapes, "columns": self._store.columns(),
                "cell_size": m.cell_size, "codec": m.codec, "index_mode": m.index,
                "indexed_masks": indexed, "pixel_bytes": pixel_bytes,
                "index_bytes": index_bytes,
                "index_share": index_bytes / pixel_bytes if pixel_bytes else 0.0,
                "index_memory": {"held": held, "decoded": decoded,
                                 "cache_budget": cache.budget, "cache_used": cache.used},
                "prepared_aggregates": self._store.aggregate_cache.prepared_entries()}

    def __repr__(self) -> str:
        state = " (closed)" if self.closed else " (read-only)" if self.read_only else ""
        return f"<masksearch.Database {self.path}{state}>"


def _runner(executor: object, path: str | Location) -> FragmentRunner | None:
    """What runs a query's fragments: here (None), or a Dask cluster's workers given a
    ``distributed.Client`` or a scheduler's address."""
    if executor is None:
        return None
    try:
        import distributed
    except ImportError:
        raise StoreError("executor= needs Dask's distributed: pip install masksearch[dask]"
                         ) from None
    from .exec.dask_runner import DaskRunner

    if isinstance(executor, str):
        try:
            client = distributed.Client(executor, timeout=10)
        except (OSError, TimeoutError, ValueError) as e:
            raise StoreError(f"cannot reach the Dask scheduler at {executor} ({e})") from None
        return DaskRunner(client, path, owns_client=True)
    if not isinstance(executor, distributed.Client):
        raise StoreError(f"executor must be a distributed.Client or a scheduler address, "
                         f"got {type(executor).__name__}")
    return DaskRunner(executor, path)


def _changes_data(stmt: ast.Statement) -> TypeGuard[ast.Change | ast.Explain]:
    """DELETE, UPDATE, ALTER TABLE, or EXPLAIN of DELETE or UPDATE."""
    from .lang import ast

    node = stmt.select if isinstance(stmt, ast.Explain) else stmt
    return not isinstance(node, ast.Select)


@lru_cache(maxsize=256)
def _planned(sql: str, columns: tuple[tuple[str, str], ...]) -> PhysicalPlan:
    """The plan of ``sql`` over these columns: exploration repeats statements, and binding
    and planning cost about as much as a selective query's bounds; plans are immutable."""
    from .lang import ast
    from .lang.binder import bind
    from .lang.parser import parse
    from .plan.planner import plan

    stmt = parse(sql)
    assert isinstance(stmt, (ast.Select, ast.Explain))
    return plan(bind(stmt, sql, dict(columns)))


def set_index_cache(budget: int | str | None) -> None:
    """Bytes of decoded index this process keeps in memory (``"512MB"``, ``"2GiB"``; ``0``:
    none; None: the adaptive default). Also ``MASKSEARCH_INDEX_CACHE`` in the environment
    (see ``masksearch.store.index_cache``)."""
    set_index_cache_budget(budget)


def connect(path: str | os.PathLike, *, create: bool = True, cell_size: int | None = None,
            bin_edges: dict | None = None, codec: str | None = None,
            index: str | None = None, segment_size: int | None = None,
            lock_timeout: float | None = None, read_only: bool = False,
            auto_compact: bool = True, executor: object = None,
            storage_options: dict[str, object] | None = None) -> Database:
    """Open the database at ``path``, creating it (with these settings) if absent, unless
    ``create=False``, which refuses a path without a database.

    ``path`` may be a URL on S3-compatible object storage, ``s3://bucket/prefix``, with
    ``storage_options``: the options of ``pyarrow.fs.S3FileSystem`` (``endpoint_override``,
    ``scheme``, ``access_key``, ``secret_key``, ``region``...; without them, the usual AWS
    environment variables). Such a database is read-only (``db.copy_to`` puts one there)
    and reads each mask with a ranged read of its own bytes.

    ``read_only=True`` never creates the database and refuses every write (``ingest``,
    ``build_index``, ``rebuild_index``) with a ``StoreError``; its queries save nothing,
    not even the CHIs lazy indexing would build.

    ``index="lazy"`` defers the CHIs: each mask gets its CHI when a query first reads it
    (or from ``build_index()``); ``"eager"`` (default) builds them at ingest. The creation
    settings (``cell_size``, ``bin_edges``, ``codec``, ``index``) are fixed then. This
    connection's ingests write segments of at most ``segment_size`` masks (default 4096),
    and wait up to ``lock_timeout`` seconds (default 30) for another writer to finish.
    ``auto_compact=False`` keeps its commits from compacting small segments by themselves
    (``compact()`` still does). ``executor``: a ``distributed.Client`` (or a scheduler's
    address) whose workers run the queries' per-segment work; they open the database at
    the same path or URL (``pip install masksearch[dask]``).
    """
    from .store.location import location_of

    where = location_of(path, storage_options)
    defaults = WriteSettings()
    write = WriteSettings(segment_masks=segment_size or defaults.segment_masks,
                          lock_timeout=defaults.lock_timeout if lock_timeout is None
                          else lock_timeout, auto_compact=auto_compact)
    return Database(Store(where, cell_size=cell_size, bin_edges=bin_edges, codec=codec,
                          index=index, write=write, create=create and not read_only,
                          read_only=read_only), executor)
