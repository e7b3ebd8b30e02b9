"""Queries and renders off the event loop: worker threads, each with its own connection to
the database; queries as jobs with an id, progress, a timeout, a row limit and a cancel."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from ..api import Database
from ..exec.control import QueryControl
from ..exec.stats import QueryStats
from .problems import ApiError, from_exception

T = TypeVar("T")


@dataclass
class QueryJob:
    """One query: its state goes queued -> running -> done | failed | cancelled."""

    id: str
    sql: str
    use_index: bool
    control: QueryControl
    state: str = "queued"
    done: int = 0                  # masks counted by the verification step under way
    total: int = 0                 # ... of how many
    table: pa.Table | None = None
    stats: QueryStats | None = None
    truncated: bool = False        # the result had more rows than the server keeps
    error: ApiError | None = None
    submitted: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.submitted


class Workers:
    """A pool of threads, each holding its own connection (opened on first use)."""

    def __init__(self, name: str, count: int, open_db: Callable[[], Database]) -> None:
        self._open = open_db
        self._local = threading.local()
        self._opened: list[Database] = []
        self._lock = threading.Lock()
        self.count = count
        self.pool = ThreadPoolExecutor(count, thread_name_prefix=f"masksearch-{name}")

    def db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
            with self._lock:
                self._opened.append(db)
        return db

    def submit(self, fn: Callable[[Database], T]) -> Future[T]:
        return self.pool.submit(lambda: fn(self.db()))

    def warm(self) -> None:
        """Start every thread and open its connection with the index loaded (about a
        quarter of a second each on the demo database), so no request pays for it."""
        barrier = threading.Barrier(self.count)

        def start() -> None:
            try:
                self.db().info()
            except BaseException:
                barrier.abort()           # the other threads stop waiting
                raise
            barrier.wait(timeout=60)

        futures = [self.pool.submit(start) for _ in range(self.count)]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None and not isinstance(error, threading.BrokenBarrierError):
                raise error

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for db in self._opened:
                db.close()
            self._opened.clear()


class QueryRunner:
    """Runs queries as jobs; keeps the last ``kept`` finished ones for paging."""

    def __init__(self, workers: Workers, timeout: float, max_rows: int, kept: int) -> None:
        self.workers = workers
        self.timeout = timeout
        self.max_rows = max_rows
        self.kept = kept
        self._jobs: OrderedDict[str, QueryJob] = OrderedDict()
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    def submit(self, sql: str, use_index: bool) -> tuple[QueryJob, Future[None]]:
        job = QueryJob(f"q{next(self._serial)}-{secrets.token_hex(6)}", sql, use_index,
                       QueryControl(timeout=self.timeout))
        job.control.progress = job.progress
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        return job, self.workers.submit(lambda db: self._run(db, job))

    def _run(self, db: Database, job: QueryJob) -> None:
        if job.control.cancelled.is_set():
            job.state, job.finished = "cancelled", time.monotonic()
            return
        job.state = "running"
        job.control.started = time.monotonic()    # the timeout counts from here
        try:
            result = db.query(job.sql, use_index=job.use_index, control=job.control)
            table = result.to_arrow()
            job.truncated = table.num_rows > self.max_rows
            job.table = table.slice(0, self.max_rows) if job.truncated else table
            job.stats = result.stats
            job.state = "done"
        except Exception as e:
            job.error = from_exception(e)
            job.state = "cancelled" if job.error.kind == "cancelled" else "failed"
        finally:
            job.finished = time.monotonic()

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.finished is not None]
        for key in finished[:max(0, len(finished) - self.kept)]:
            del self._jobs[key]

    def get(self, job_id: str) -> QueryJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no query {job_id!r} (finished queries are kept for a while "
                                "only)", "not_found")
        return job

    def cancel(self, job_id: str) -> QueryJob:
        job = self.get(job_id)
        job.control.cancel()
        return job

    def cancel_all(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.control.cancel()

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": j.id, "state": j.state} for j in self._jobs.values()
                    if j.finished is None]
