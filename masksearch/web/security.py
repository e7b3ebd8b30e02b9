"""Headers every answer carries (a strict Content-Security-Policy: scripts and styles only
from this server, no inline code) and the Host check that keeps other web sites from
reaching the server through DNS rebinding."""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin")]
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(bound: str) -> set[str] | None:
    """Host names a request may carry; ``None`` (any) when bound to every interface."""
    if bound in ("0.0.0.0", "::", ""):
        return None
    return {*LOCAL_NAMES, bound, f"[{bound}]"}


def _host_name(value: str) -> str:
    if value.startswith("["):
        return value[:value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityHeaders:
    """ASGI middleware: the headers above on every answer; a foreign Host refused (400)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] | None) -> None:
        self.app = app
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        if self.hosts is not None and _host_name(host) not in self.hosts:
            await _refuse_host(send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse_host(send: Send) -> None:
    body = json.dumps({"error": "this server answers only to its own host name",
                       "kind": "request"}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *HEADERS]})
    await send({"type": "http.response.body", "body": body})
