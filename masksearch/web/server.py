"""``masksearch serve``: open the database, bind the socket, run uvicorn until Ctrl-C."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api import Database, connect
from ..errors import StoreError
from ..store.manifest import MANIFEST
from . import require_extra
from .config import ServeConfig


def opener(config: ServeConfig) -> Callable[[], Database]:
    """Opens one connection: read-only unless writes are allowed."""
    if not (Path(config.path) / MANIFEST).is_file():
        raise StoreError(f"no masksearch database at {config.path}")

    def open_db() -> Database:
        return connect(config.path, create=False, read_only=not config.allow_writes)

    return open_db


def set_image_root(config: ServeConfig) -> None:
    """``--images DIR``: kept in the database's settings, as ``db.image_root = DIR`` does."""
    if config.images is None:
        return
    if not Path(config.images).is_dir():
        raise StoreError(f"--images {config.images}: no such folder")
    with connect(config.path, create=False) as db:
        if getattr(db, "image_root", None) != str(Path(config.images).resolve()):
            db.image_root = str(Path(config.images).resolve())


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free one)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise StoreError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def _server(config: ServeConfig) -> tuple[Any, Any]:
    """A uvicorn server for ``config`` (not started) and the app's state."""
    import uvicorn

    from .app import create_app, make_state

    set_image_root(config)
    state = make_state(config, opener(config))
    state.warm()                          # every connection open: fail now, not later

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.runner.cancel_all()     # a running query must not hold up the exit
            super().handle_exit(sig, frame)

    return Server(uvicorn.Config(create_app(state), log_level="warning", access_log=False,
                                 lifespan="on", timeout_graceful_shutdown=5)), state


def serve(config: ServeConfig, announce: Callable[[str], Any] = print) -> None:
    """Serve ``config.path`` until interrupted (Ctrl-C stops the running queries first)."""
    require_extra()
    server, _ = _server(config)
    sock = bind(config.host, config.port)
    mode = "read-write" if config.allow_writes else "read-only"
    announce(f"masksearch: serving {config.path} ({mode}) at {url_of(sock)}  (Ctrl-C stops)")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):   # uvicorn raises a captured SIGINT again
        server.run(sockets=[sock])                  # once it has stopped
    announce("masksearch: stopped")


class BackgroundServer:
    """The server in a thread of this process, e.g. from a notebook or a test::

        with BackgroundServer(ServeConfig("masks.msdb", port=0)) as url:
            ...   # url is "http://127.0.0.1:PORT/"
    """

    def __init__(self, config: ServeConfig) -> None:
        require_extra()
        self.server, self.state = _server(config)
        self.sock = bind(config.host, config.port)
        self.url = url_of(self.sock)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="masksearch-serve", daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StoreError("the web server did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self.state.runner.cancel_all()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
