"""Control of a running query: cancellation, a deadline, and progress of pixel work.

The executor installs one ``QueryControl`` per query in a context variable; the verifying
threads receive it from the thread that starts them (context variables do not cross into
pool threads by themselves) and call ``check`` between masks, so a cancelled query stops
within one mask per thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..errors import QueryCancelled, QueryTimeout

ProgressFn = Callable[[int, int], None]


@dataclass
class QueryControl:
    """``cancel`` stops the query from any thread; ``timeout`` (seconds) stops it by itself.

    ``progress(done, total)`` is told how many masks a verification step has counted of how
    many it has to; it is called from the thread that runs the query.
    """

    timeout: float | None = None
    progress: ProgressFn | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    reason: QueryCancelled | None = None   # what every thread raises once stopped

    def cancel(self, reason: QueryCancelled | None = None) -> None:
        if self.reason is None:
            self.reason = reason or QueryCancelled("query cancelled")
        self.cancelled.set()

    def check(self) -> None:
        """Raise ``QueryCancelled`` or ``QueryTimeout`` when the query must stop."""
        if self.timeout is not None and not self.cancelled.is_set() and \
                time.monotonic() - self.started > self.timeout:
            self.cancel(QueryTimeout(f"query stopped after its timeout of {self.timeout:g} s"))
        if self.cancelled.is_set():
            # The same error in every thread, whichever the pool reports first.
            reason = self.reason or QueryCancelled("query cancelled")
            raise type(reason)(*reason.args)


_current: ContextVar[QueryControl | None] = ContextVar("masksearch_query_control",
                                                       default=None)


def current() -> QueryControl:
    """The running query's control (a fresh one that never stops outside a query)."""
    return _current.get() or QueryControl()


@contextmanager
def running(control: QueryControl) -> Iterator[QueryControl]:
    """Install ``control`` for the query run inside the block."""
    token = _current.set(control)
    try:
        control.check()
        yield control
    finally:
        _current.reset(token)
