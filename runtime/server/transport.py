"""The HTTP/1.1 connection guards under the application: uvicorn's h11 protocol with the timeouts and the
connection bound that uvicorn itself lacks (its ``timeout_keep_alive`` is reset by every byte, so a client that
never finishes its request headers holds its connection forever; ``limit_concurrency`` answers only requests
whose headers are complete, and ``accept()`` fails once the file limit is reached).

Per connection (checked every :data:`TICK` seconds, so each bound holds to within that):

* **headers**: a request's headers must be complete within ``header_timeout`` seconds of the connection opening
  (first request) or of the request's first byte (later requests on a kept-alive connection); else a 408 JSON
  error and the connection is closed;
* **body**: once the headers are in, the body must arrive at ``min_body_rate`` bytes/s on average, measured
  from ``header_timeout`` seconds after it began (time the application is not reading does not count); else 408
  and close;
* **response**: a client that reads nothing of its response for ``write_timeout`` seconds is closed;
* **idle**: uvicorn's keep-alive timeout (``timeout_keep_alive``) closes a connection idle between requests.

Per server: at most ``max_connections`` connections are open (below the process's file limit, see
:func:`default_max_connections`). A new connection beyond the bound closes the oldest connection that is not
in a request (still sending its headers, or idle between requests); when every connection is in a request, the
new one is answered 503 JSON with ``Retry-After`` and closed. Errors uvicorn answers itself (malformed HTTP)
carry the JSON error body too.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["TransportLimits", "ConnectionTable", "GuardedSocket", "listen_sockets", "guarded_protocol",
           "default_max_connections", "raw_error"]

TICK = 0.5
"""Seconds between two checks of a connection's timeouts."""
RESERVED_FDS = 64
"""File descriptors kept free beside the connections (model files, logs, the pool, an accept in progress)."""


@dataclass(frozen=True)
class TransportLimits:
    """Connection bounds of one server; times in seconds, rates in bytes/s."""

    header_timeout: float = 10.0
    min_body_rate: float = 64 * 1024
    write_timeout: float = 60.0
    max_connections: int = 1000


def default_max_connections(cap: int = 1000) -> int:
    """At most ``cap`` connections, and :data:`RESERVED_FDS` plus the descriptors open now below the soft file
    limit (``RLIMIT_NOFILE``), at least 8."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(8, min(cap, soft - in_use - RESERVED_FDS))


def raw_error(status: int, reason: str, code: str, message: str, extra: list[tuple[str, str]] = ()) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with the JSON error body, as bytes."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class ConnectionTable:
    """The connections of one server: at most ``max_connections`` admitted, oldest first; and the sockets
    accepted and not yet closed (``live``, which may pass the bound by :data:`SLACK` while evicted ones close)."""

    def __init__(self, max_connections: int):
        self.max_connections = int(max_connections)
        self.open: "OrderedDict[_GuardedH11, None]" = OrderedDict()  # admitted, connection made, oldest first
        self.admitted = 0  # accepted and neither evicted nor lost
        self.live = 0  # accepted and not yet closed
        self.refused = self.evicted = 0

    def admit(self) -> bool:
        """Room for one more connection, made by closing the oldest one between requests when at the bound."""
        if self.admitted < self.max_connections:
            self.admitted += 1
            return True
        for proto in self.open:
            if proto._between_requests():
                self.open.pop(proto)
                proto._evict()  # its place goes to the new connection: admitted stays the same
                self.evicted += 1
                return True
        self.refused += 1
        return False


SLACK = 32
"""Sockets beyond ``max_connections`` that may be open at once while evicted connections close."""


class GuardedSocket(socket.socket):
    """A listening socket whose ``accept`` (called by asyncio's accept loop) admits a connection only within its
    :class:`ConnectionTable`: over the bound it evicts an idle connection or answers 503 JSON and closes the new
    one at once, and it accepts nothing while ``max_connections + SLACK`` sockets are open, so ``accept()``
    never runs out of file descriptors."""

    table: ConnectionTable

    def accept(self):  # type: ignore[override]
        table = self.table
        while True:
            if table.live >= table.max_connections + SLACK:
                raise BlockingIOError  # asyncio tries again on its next turn, when the evicted have closed
            if table.admitted >= table.max_connections and len(table.open) < table.admitted:
                raise BlockingIOError  # some admitted are not made yet (a burst): they may be the ones to evict
            conn, addr = super().accept()
            if table.admit():
                table.live += 1
                return conn, addr
            try:
                conn.setblocking(False)
                conn.send(raw_error(503, "Service Unavailable", "too_many_connections",
                                    f"all {table.max_connections} connections are in requests: retry shortly",
                                    [("retry-after", "1")]))
            except OSError:
                pass
            conn.close()


def listen_sockets(host: str, port: int, table: ConnectionTable) -> list[GuardedSocket]:
    """Bound (not yet listening) :class:`GuardedSocket` s for ``host``'s addresses (``localhost``: IPv4 and
    IPv6) and ``port``, sharing ``table``. OSError when the address cannot be bound."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[GuardedSocket] = []
    seen = set()
    for family, _type, proto, _name, addr in infos:
        if (family, addr[:2]) in seen:
            continue
        seen.add((family, addr[:2]))
        sock = GuardedSocket(family, socket.SOCK_STREAM, proto)
        sock.table = table
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
        except OSError:
            sock.close()
            for s in out:
                s.close()
            raise
        sock.setblocking(False)
        out.append(sock)
    return out


def guarded_protocol(limits: TransportLimits, table: ConnectionTable) -> type[H11Protocol]:
    """A uvicorn HTTP protocol class (``uvicorn.Config(http=...)``) enforcing ``limits`` on the connections of
    ``table`` (one table per server, shared with its :class:`GuardedSocket` s)."""

    class Guarded(_GuardedH11):
        pass

    Guarded.limits = limits
    Guarded.table = table
    return Guarded


class _GuardedH11(H11Protocol):
    limits: TransportLimits
    table: ConnectionTable

    # -- connection life ---------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since: float | None = time.monotonic()  # the current request's header phase began
        self._body_since: float | None = None
        self._body_bytes = 0
        self._stall_since: float | None = None
        self._partial = False  # bytes of the current request's headers were received
        self._counted = True  # in table.admitted (until evicted or lost)
        self.table.open[self] = None
        self._tick = self.loop.call_later(TICK, self._check)

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        table = self.table
        table.open.pop(self, None)
        table.live -= 1
        if getattr(self, "_counted", False):
            table.admitted -= 1
            self._counted = False
        if getattr(self, "_tick", None) is not None:
            self._tick.cancel()
            self._tick = None
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        """Not in a request: sending its headers, or idle between requests (the connection can be dropped)."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _evict(self) -> None:
        """Closed to make room (the table has uncounted it): its socket is closed on the loop's next turn."""
        self._counted = False
        self.transport.abort()

    def _close(self, reply: bytes | None) -> None:
        if not self.transport.is_closing():
            if reply is not None:
                self.transport.write(reply)
            self.transport.close()

    # -- bytes in -----------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        in_body = self.conn.their_state is h11.SEND_BODY
        super().data_received(data)
        state = self.conn.their_state
        now = time.monotonic()
        if state is h11.IDLE:
            self._partial = True
            if self._head_since is None:  # the first byte of a later request
                self._head_since = now
        else:
            self._head_since = None
            self._partial = False
        if state is h11.SEND_BODY:
            if self._body_since is None:
                self._body_since, self._body_bytes = now, 0
            elif in_body:
                self._body_bytes += len(data)
        else:
            self._body_since = None

    def on_response_complete(self) -> None:
        self._head_since = self._body_since = self._stall_since = None
        self._partial = False
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._head_since = time.monotonic()  # a pipelined request's first bytes are already here

    # -- the periodic check ----------------------------------------------------------------------------------
    def _check(self) -> None:
        self._tick = None
        if self.transport.is_closing():
            return
        now = time.monotonic()
        lim = self.limits
        if self._head_since is not None and self.conn.their_state is h11.IDLE and now - self._head_since > lim.header_timeout:
            msg = f"the request headers did not arrive within {lim.header_timeout:g} s"
            self._close(raw_error(408, "Request Timeout", "request_timeout", msg) if self._partial else None)
            return
        if self._body_since is not None and self.conn.their_state is h11.SEND_BODY:
            if self.flow.read_paused:  # the application is not reading: the client is not slow
                self._body_since, self._body_bytes = now, 0
            else:
                elapsed = now - self._body_since
                if elapsed > lim.header_timeout and self._body_bytes < lim.min_body_rate * elapsed:
                    started = self.cycle is not None and self.cycle.response_started
                    msg = (f"the request body arrived slower than {lim.min_body_rate / 1024:g} KiB/s "
                           f"({self._body_bytes:,} bytes in {elapsed:.0f} s)")
                    self._close(None if started else raw_error(408, "Request Timeout", "request_timeout", msg))
                    return
        if self.flow.write_paused:
            self._stall_since = self._stall_since or now
            if now - self._stall_since > lim.write_timeout:
                self._close(None)
                return
        else:
            self._stall_since = None
        self._tick = self.loop.call_later(TICK, self._check)

    # -- uvicorn's own error answers, as JSON ---------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        self._close(raw_error(400, "Bad Request", "bad_request", f"{msg} (malformed HTTP/1.1)"))
