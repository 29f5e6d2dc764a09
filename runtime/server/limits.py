"""Pure-ASGI guards in front of the routes: Host header, API key, request-body size.

* :class:`HostCheck`: the ``Host`` header must name an allowed host (DNS rebinding: a page on another site that
  resolves its name to 127.0.0.1 sends its own name) — 400 ``bad_host`` otherwise.
* :class:`ApiKeyCheck`: with a key set, every ``/v1/`` request needs it (``Authorization: Bearer KEY``,
  ``X-API-Key: KEY`` or X-AnyLabeling's ``Token: KEY``), compared with :func:`hmac.compare_digest` — 401.
* :class:`BodyLimit`: a ``Content-Length`` over the limit is answered 413 before any byte of the body is read;
  bodies without one (chunked) are counted as they stream in and answered 413 as soon as the count passes the
  limit — the rest is never read (the connection is closed after the answer).

Every answer is JSON ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from typing import Any, Awaitable, Callable, Iterable

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

__all__ = ["HostCheck", "ApiKeyCheck", "BodyLimit", "CutOff", "JSONCORS", "send_error", "host_name", "LOOPBACK_NAMES"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


async def send_error(send: Callable, status: int, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON error response."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v
    return None


def host_name(value: str) -> str:
    """The host part of a Host header (no port; IPv6 without brackets), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheck:
    """Refuse requests whose Host header is not one of ``allowed`` (names without ports; "*" allows all)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]):
        self.app = app
        self.allowed = {host_name(h) if h != "*" else "*" for h in allowed}

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and "*" not in self.allowed:
            raw = _header(scope, b"host")
            host = host_name(raw.decode("latin-1")) if raw else ""
            if host not in self.allowed:
                await send_error(send, 400, "bad_host", "the Host header names a host this server does not serve "
                                 "(start it with --allowed-host NAME to allow one)")
                return
        await self.app(scope, receive, send)


class ApiKeyCheck:
    """With ``key`` set, paths under ``prefixes`` need it; compared in constant time."""

    def __init__(self, app: ASGIApp, key: str | None, prefixes: tuple[str, ...] = ("/v1/",)):
        self.app = app
        self.key = key.encode() if key else None
        self.prefixes = prefixes

    def _given(self, scope: Scope) -> bytes:
        auth = _header(scope, b"authorization") or b""
        if auth[:7].lower() == b"bearer ":
            return auth[7:].strip()
        if auth[:6].lower() == b"basic ":  # Label Studio's ML backend connection: the key as the password
            try:
                return base64.b64decode(auth[6:].strip(), validate=True).partition(b":")[2]
            except ValueError:
                return b""
        return (_header(scope, b"x-api-key") or _header(scope, b"token") or b"").strip()

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if (self.key is not None and scope["type"] == "http" and scope.get("method") != "OPTIONS"
                and scope.get("path", "").startswith(self.prefixes)):
            if not hmac.compare_digest(self._given(scope), self.key):
                await send_error(send, 401, "unauthorized", "missing or wrong API key: send Authorization: Bearer KEY "
                                 "(or X-API-Key: KEY, or Token: KEY)", [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answer 413 to request bodies over ``max_bytes``, from Content-Length or while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    def _message(self) -> str:
        return f"the request body is over the limit of {self.max_bytes:,} bytes ({self.max_bytes / 2**20:g} MiB; --max-upload-mb)"

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await send_error(send, 400, "bad_request", "Content-Length is not a number")
                return
            if n > self.max_bytes:
                await send_error(send, 413, "too_large", self._message(), [(b"connection", b"close")])
                return
        seen = 0
        refused = False
        started = False

        async def counted_receive() -> dict:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        await send_error(send, 413, "too_large", self._message(), [(b"connection", b"close")])
                    return {"type": "http.disconnect"}  # the app stops reading: the rest is never received
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if refused:
                return  # our 413 went out: drop what the app sends after its body was cut off
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise


class CutOff:
    """Outermost: a request cancelled by the server's shutdown (``--drain-seconds`` over) before its answer
    started gets a 503 JSON error instead of uvicorn's plain-text 500."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:
                raise
            await send_error(send, 503, "shutting_down", "the server shut down before this request finished: retry",
                             [(b"connection", b"close"), (b"retry-after", b"1")])


def _json_cors():
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import Response

    class JSONCORS(CORSMiddleware):
        """Starlette's CORS middleware whose refused preflight (400) carries the JSON error body."""

        def preflight_response(self, request_headers: Any) -> Response:
            r = super().preflight_response(request_headers)
            if r.status_code < 400:
                return r
            body = json.dumps({"error": {"code": "cors_refused", "message": bytes(r.body).decode("utf-8", "replace")}})
            headers = {k: v for k, v in r.headers.items() if k.lower() not in ("content-length", "content-type")}
            return Response(body, status_code=r.status_code, headers=headers, media_type="application/json")

    return JSONCORS


JSONCORS = _json_cors()
