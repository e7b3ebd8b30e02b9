"""Work split into chunks over a shared thread pool, balanced as threads come free.

The kernels release the GIL, so threads give real parallelism. Dynamic chunks (rather than
Numba's ``prange``, which splits work evenly up front) keep a query fast on a shared machine:
when another process holds a core, the free threads take the chunks the busy one cannot, and
no thread waits at a barrier for a descheduled one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

CORES = os.cpu_count() or 1    # asked once: os.cpu_count() reads /sys on every call
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_inside = threading.local()


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(CORES, thread_name_prefix="masksearch",
                                       initializer=_mark_worker)
        return _pool


def _mark_worker() -> None:
    _inside.worker = True


def _forget_pool() -> None:
    # A forked child has none of the parent's threads: a pool inherited from the parent
    # would accept work that no thread ever runs.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _inline(n_tasks: int) -> bool:
    """Run on the calling thread: one task, one core, or already on a pool thread (waiting
    there for the pool's other threads could wait forever)."""
    return n_tasks <= 1 or CORES == 1 or getattr(_inside, "worker", False)


def spread_chunk(n: int, largest: int, smallest: int = 1) -> int:
    """A chunk size for ``n`` items of costly work (a mask to decode, say): at most
    ``largest``, and small enough that every core gets some of even a short list, but at
    least ``smallest`` (below that, handing work to a thread costs more than it saves)."""
    return max(smallest, min(largest, -(-n // (2 * CORES))))


def _parts(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def chunks_in_order(n: int, chunk: int,
                    fn: Callable[[int, int], None]) -> Iterator[tuple[int, int]]:
    """Call ``fn(start, stop)`` for consecutive chunks of ``range(n)``, in parallel, and
    yield each chunk's ``(start, stop)`` to the caller's thread once it is done, in order
    (for progress reports). ``fn`` must write only its own part of any output."""
    parts = _parts(n, chunk)
    if _inline(len(parts)):
        for part in parts:
            fn(*part)
            yield part
        return
    pool = _shared_pool()
    futures = [pool.submit(fn, *part) for part in parts]
    try:
        for part, future in zip(parts, futures, strict=True):
            future.result()
            yield part
    finally:
        for future in futures:     # on an error (or Ctrl-C), drop the chunks not started
            future.cancel()


def for_chunks(n: int, chunk: int, fn: Callable[[int, int], None]) -> None:
    """``chunks_in_order`` without the reports."""
    for _ in chunks_in_order(n, chunk, fn):
        pass


def run_all(tasks: list[Callable[[], None]]) -> None:
    """Run independent tasks on all cores; they must write disjoint outputs."""
    for_chunks(len(tasks), 1, lambda s, e: tasks[s]())


def _run_each(unit: list[Callable[[], None]]) -> None:
    for fn in unit:
        fn()


def run_sized(tasks: list[tuple[Callable[[], None], int]], min_size: int) -> None:
    """``run_all`` for tasks of known sizes: consecutive tasks run together, as units of
    about equal size and at least ``min_size`` each, so that each hand-off to a thread is
    worth its cost; work smaller than two units runs on the calling thread (a hand-off
    costs 50-150 us)."""
    total = sum(n for _, n in tasks)
    target = max(1.0, total / max(1, total // max(1, min_size)))
    units: list[list[Callable[[], None]]] = []
    size = target
    for fn, n in tasks:
        if size >= target:
            units.append([])
            size = 0
        units[-1].append(fn)
        size += n
    run_all([partial(_run_each, unit) for unit in units])


class Background:
    """One task at a time on a thread of its own (file writes that overlap the next
    computation): ``start`` waits for the task before; ``wait`` raises a task's error."""

    def __init__(self, name: str):
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the task before has ended (its error, if any, raised here)."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=self.name)
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # handed to the caller's thread by wait()
            self._error = e

    def settle(self) -> None:
        """Wait for the task to end, keeping any error for ``wait``."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait(self) -> None:
        """Wait for the task to end; raise its error, if it had one."""
        self.settle()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
