"""The Starlette application: the page, its static assets and the JSON API.

    GET    /                          the page (``/?sql=...`` runs that query on load)
    GET    /api/info                  columns, counts, index facts
    POST   /api/query                 {"sql", "use_index", "limit", "offset"} -> rows, stats
    POST   /api/queries               {"sql", "use_index"} -> {"id"}: a query run in the background
    GET    /api/queries/{id}          its state and progress; once done a page of its rows
    GET    /api/queries/{id}/cards    pictures of grouped rows (members, aggregated masks)
    DELETE /api/queries/{id}          cancels it
    GET    /api/masks/{id}            one mask's metadata
    GET    /api/masks/{id}.png        its picture (?size=&roi=&range=)
    GET    /api/masks/{id}/image      its source image, from under the image root only
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..api import Database
from . import requests as rq
from .catalog import catalog
from .config import ServeConfig
from .pictures import PngCache, group_cards, render_png, source_image
from .problems import ApiError, from_exception
from .runner import QueryJob, QueryRunner, Workers
from .security import SecurityHeaders, allowed_hosts
from .statements import changes_data, picture_term
from .values import column_type, stats_json, table_rows

STATIC = Path(__file__).with_name("static")
T = TypeVar("T")


@dataclass
class AppState:
    config: ServeConfig
    queries: Workers
    renders: Workers
    runner: QueryRunner
    pngs: PngCache

    def warm(self) -> None:
        self.queries.warm()
        self.renders.warm()

    def close(self) -> None:
        self.runner.cancel_all()
        self.queries.close()
        self.renders.close()


def make_state(config: ServeConfig, open_db: Callable[[], Database]) -> AppState:
    queries = Workers("query", config.query_workers, open_db)
    runner = QueryRunner(queries, config.timeout, config.max_rows, config.kept_results)
    return AppState(config, queries, Workers("render", config.render_workers, open_db),
                    runner, PngCache(config.thumbnails))


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.masksearch
    return state


async def _on(workers: Workers, fn: Callable[[Database], T]) -> T:
    return await asyncio.wrap_future(workers.submit(fn))


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers={"cache-control": "no-store"})


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


async def info(request: Request) -> Response:
    # Short reads go to the picture workers: long queries on the query workers never hold
    # up the side panel or a detail view.
    return _json(await _on(_state(request).renders, catalog))


def _refuse_writes(state: AppState, sql: str) -> None:
    if changes_data(sql) and not state.config.allow_writes:
        raise ApiError(403, "this server is read-only: statements that change data are "
                            "refused (start it with --allow-writes to allow them)", "read_only")


def _result_page(job: QueryJob, offset: int, limit: int) -> dict[str, Any]:
    assert job.table is not None
    assert job.stats is not None
    table = job.table
    return {"columns": table.column_names,
            "types": [column_type(t) for t in table.schema.types],
            "rows": table_rows(table, offset, limit), "stats": stats_json(job.stats),
            "total_rows": table.num_rows, "offset": offset, "limit": limit,
            "truncated": job.truncated, "picture": picture_term(job.sql)}


def _job_json(job: QueryJob, offset: int, limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {"id": job.id, "state": job.state, "sql": job.sql,
                           "use_index": job.use_index, "elapsed": round(job.elapsed, 4),
                           "progress": {"done": job.done, "total": job.total}}
    if job.state == "done":
        out |= _result_page(job, offset, limit)
    elif job.error is not None:
        out |= job.error.body()
    return out


def _after_write(state: AppState, job: QueryJob) -> None:
    if job.state == "done" and changes_data(job.sql):
        state.pngs.clear()


async def run_query(request: Request) -> Response:
    """Run a statement and answer with a page of its rows (the scripts' endpoint)."""
    state = _state(request)
    req = rq.query_request(await rq.json_body(request), state.config.page_limit)
    _refuse_writes(state, req.sql)
    job, future = state.runner.submit(req.sql, req.use_index)
    await asyncio.wrap_future(future)
    _after_write(state, job)
    if job.error is not None:
        raise job.error
    return _json(_result_page(job, req.offset, req.limit))


async def start_query(request: Request) -> Response:
    state = _state(request)
    body = await rq.json_body(request)
    req = rq.query_request(body, state.config.page_limit)
    _refuse_writes(state, req.sql)
    job, future = state.runner.submit(req.sql, req.use_index)
    future.add_done_callback(lambda _: _after_write(state, job))
    return _json({"id": job.id, "state": job.state}, 202)


async def query_status(request: Request) -> Response:
    state = _state(request)
    offset, limit = rq.page(request.query_params, state.config.page_limit)
    job = state.runner.get(request.path_params["job_id"])
    return _json(_job_json(job, offset, limit))


async def query_cards(request: Request) -> Response:
    """Pictures of a finished query's rows that are groups (or lack a mask_id)."""
    state = _state(request)
    offset, limit = rq.page(request.query_params, min(state.config.page_limit, 100))
    job = state.runner.get(request.path_params["job_id"])
    if job.state != "done" or job.table is None:
        raise ApiError(409, f"query {job.id} has no rows yet (it is {job.state})", "state")
    table, sql = job.table, job.sql
    size = rq.render_request({"size": request.query_params.get("size", "160")}).size or 160
    cards = await _on(state.renders, lambda db: group_cards(db, sql, table, offset, limit, size))
    return _json(cards)


async def cancel_query(request: Request) -> Response:
    job = _state(request).runner.cancel(request.path_params["job_id"])
    return _json({"id": job.id, "state": job.state, "cancel_requested": True})


async def mask_info(request: Request) -> Response:
    mask_id = rq.mask_id(request.path_params["mask_id"])

    def read(db: Database) -> dict[str, Any]:
        result = db.query(f"SELECT * FROM masks WHERE mask_id = {mask_id}")
        table = result.to_arrow()
        if table.num_rows == 0:
            raise ApiError(404, f"mask_id {mask_id} does not exist", "not_found")
        values = table_rows(table, 0, 1)[0]
        return {"mask_id": mask_id, "columns": table.column_names,
                "types": [column_type(t) for t in table.schema.types], "values": values}

    return _json(await _on(_state(request).renders, read))


async def mask_png(request: Request) -> Response:
    state = _state(request)
    mask_id = rq.mask_id(request.path_params["mask_id"])
    req = rq.render_request(request.query_params)
    key = (mask_id, req.roi, req.range, req.size, req.legend)
    png = state.pngs.get(key)
    if png is None:
        png = await _on(state.renders, lambda db: render_png(db, mask_id, req))
        state.pngs.put(key, png)
    return Response(png, media_type="image/png",
                    headers={"cache-control": "private, max-age=60"})


async def mask_image(request: Request) -> Response:
    mask_id = rq.mask_id(request.path_params["mask_id"])
    path, media = await _on(_state(request).renders, lambda db: source_image(db, mask_id))
    return FileResponse(path, media_type=media, headers={"cache-control": "private, max-age=60"})


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        problem = ApiError(exc.status_code, str(exc.detail) if exc.detail else "error",
                           "not_found" if exc.status_code == 404 else "request")
    else:
        problem = from_exception(exc)
    return _json(problem.body(), problem.status)


ROUTES = [
    Route("/", index),
    Route("/api/info", info),
    Route("/api/query", run_query, methods=["POST"]),
    Route("/api/queries", start_query, methods=["POST"]),
    Route("/api/queries/{job_id:str}", query_status, methods=["GET"]),
    Route("/api/queries/{job_id:str}", cancel_query, methods=["DELETE"]),
    Route("/api/queries/{job_id:str}/cards", query_cards),
    Route("/api/masks/{mask_id:int}", mask_info),
    Route("/api/masks/{mask_id:int}.png", mask_png),
    Route("/api/masks/{mask_id:int}/image", mask_image),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(state: AppState) -> Starlette:
    """The application serving ``state``'s database; closing it closes the workers."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        Exception: _error, HTTPException: _error, ApiError: _error}
    app = Starlette(routes=ROUTES, exception_handlers=handlers, lifespan=lifespan)
    app.state.masksearch = state
    app.add_middleware(SecurityHeaders, hosts=allowed_hosts(state.config.host))
    return app
