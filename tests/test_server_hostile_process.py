"""Hostile clients against a real `fastsam-onnx serve` process on 127.0.0.1, where the behaviour lives in the
server stack (:mod:`fastsam_onnx.server.transport`): partial headers under a lowered file limit, a body that
trickles, idle keep-alive connections, the connection bound, malformed HTTP, the command line's refusals of
non-finite limits and out-of-range ports. Every loop is bounded in count and time; traffic stays on loopback.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from serverkit import free_port, serve_process  # noqa: E402

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _read_reply(s: socket.socket, timeout: float) -> bytes:
    """Bytes the server sends until it closes the connection (or ``timeout`` seconds pass)."""
    s.settimeout(timeout)
    out = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            part = s.recv(65536)
            if not part:
                break
            out += part
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def _json_error(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


@contextmanager
def _file_limit(n: int):
    """Raise this process's own soft file limit to at least ``n`` (it opens the hostile connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _lower_limit() -> None:  # preexec_fn of the served process: RLIMIT_NOFILE 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@contextmanager
def _serve_limited(*extra: str):
    """A serve process whose file limit is 256 (serverkit's serve_process cannot pass preexec_fn)."""
    from serverkit import wait_ready

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastsam_onnx", "serve", "--port", str(port), "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_lower_limit)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield proc, url
    finally:
        proc.kill()
        proc.wait(30)


@pytest.mark.slow
def test_partial_headers_under_a_low_file_limit_do_not_stall_healthz():
    """300 connections that send half a request head and stop, against a server whose file limit is 256:
    /healthz still answers within 1 s (before: every /healthz timed out), new connections never make
    accept() fail, and the held connections are closed with a JSON 408 after --header-timeout."""
    with _file_limit(1024), _serve_limited("--header-timeout", "3") as (proc, url), ExitStack() as stack:
        port = _port(url)
        socks = []
        for _ in range(300):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            s.sendall(HEAD + b"X-Slow: ")
            socks.append(s)
        for _ in range(3):
            t = time.monotonic()
            r = httpx.get(url + "/healthz", timeout=5)
            assert r.status_code == 200 and time.monotonic() - t < 1.0, (r.status_code, time.monotonic() - t)
        # the newest held connections (not evicted to make room) get the 408 once their 3 s are over
        replies = [_read_reply(s, 8) for s in socks[-20:]]
        assert all(replies), "a partial-header connection was still open after --header-timeout + 5 s"
        status, body = _json_error(replies[-1])
        assert status == 408 and body["error"]["code"] == "request_timeout", body
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        proc.kill()
        proc.wait(30)
        assert "Too many open files" not in proc.stderr.read()


def test_slow_body_idle_keepalive_and_malformed_http():
    with serve_process("--header-timeout", "1", "--min-upload-rate", "64", "--keep-alive", "1") as (_p, url):
        port = _port(url)
        # a body that trickles: 10 bytes of a declared 1 MB, then nothing
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000000\r\n\r\n{\"image_id")
            status, body = _json_error(_read_reply(s, 10))
            assert status == 408 and "KiB/s" in body["error"]["message"], body
        # a connection idle after its response is closed after --keep-alive
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(HEAD + b"\r\n")
            reply = _read_reply(s, 6)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b'{"status":"ok"}'), reply
        # malformed HTTP: uvicorn's own 400, as JSON
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n")
            status, body = _json_error(_read_reply(s, 5))
            assert status == 400 and body["error"]["code"] == "bad_request", body


def test_connections_in_requests_fill_the_bound_then_503():
    """--max-connections 4, four connections in the middle of sending a body (within the grace time): a fifth
    gets 503 JSON with Retry-After; an idle connection at the bound is closed to make room instead."""
    with serve_process("--max-connections", "4", "--header-timeout", "30") as (_p, url), ExitStack() as stack:
        port = _port(url)
        idle = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        busy = []
        for _ in range(3):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            s.sendall(b"POST /v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            busy.append(s)
        time.sleep(0.3)
        r = httpx.get(url + "/healthz", timeout=5)  # takes the idle connection's place
        assert r.status_code == 200
        assert _read_reply(idle, 5) == b""  # closed without a word: it had sent nothing
        s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        s.sendall(b"POST /v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
        busy.append(s)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            reply = _read_reply(extra, 5)
        status, body = _json_error(reply)
        assert status == 503 and body["error"]["code"] == "too_many_connections" and b"retry-after: 1" in reply
        for s in busy:
            s.close()
        end = time.monotonic() + 10
        while time.monotonic() < end:  # the busy connections' places come back
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not recover its connection places")


@pytest.mark.parametrize("args", [("--max-upload-mb", "inf"), ("--cache-mb", "inf"), ("--max-megapixels", "inf"),
                                  ("--max-megapixels", "nan"), ("--port", "70000"), ("--header-timeout", "0"),
                                  ("--max-connections", "0")])
def test_non_finite_or_out_of_range_options_are_usage_errors(args):
    p = subprocess.run([sys.executable, "-m", "fastsam_onnx", "serve", *args], capture_output=True, text=True,
                       timeout=60, env=os.environ)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and args[0] in lines[0], p.stderr


@pytest.mark.slow
def test_a_request_cut_off_at_shutdown_gets_the_json_error():
    """SIGTERM while a request is still in flight after the drain time: its client gets a 503 JSON body
    (`shutting_down`), not a dropped connection; the process ends."""
    import signal

    with serve_process("--drain-seconds", "1") as (proc, url):
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as s:
            s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n" + b'{"image": "' + b"A" * 1000)  # the body stops there
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            reply = _read_reply(s, 15)
        status, body = _json_error(reply)
        assert status == 503 and body["error"]["code"] == "shutting_down", reply[:300]
        assert proc.wait(30) is not None
