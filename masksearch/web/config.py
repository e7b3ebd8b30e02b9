"""The settings of one server: where the database is, what it may do, its limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    path: str
    host: str = "127.0.0.1"
    port: int = 8765
    images: str | None = None        # image root for this run (kept in the database's settings)
    allow_writes: bool = False       # else the database is opened read-only
    timeout: float = 120.0           # seconds a query may run
    max_rows: int = 100_000          # rows of one result the server keeps
    page_limit: int = 1000           # rows one request may ask for
    query_workers: int = 4           # queries run at once (each worker has its own connection)
    render_workers: int = 2          # pictures rendered at once, apart from the queries
    thumbnails: int = 1024           # rendered PNGs kept (LRU)
    kept_results: int = 64           # finished queries kept for paging

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.max_rows >= 1 and self.page_limit >= 1
                and self.query_workers >= 1 and self.render_workers >= 1):
            raise ValueError(f"invalid server settings: {self}")
