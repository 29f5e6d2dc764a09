"""A real `fastsam-onnx serve` process on 127.0.0.1: start-up refusals, the 413 of a chunked upload while it
streams (raw socket), SIGTERM draining, and a bounded load test (4 clients x 200 requests: only 200/429, no
lost request, RSS growth under the 128 MiB cache bound + 64 MiB). Every loop is bounded; traffic stays on
loopback."""

from __future__ import annotations

import base64
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from serverkit import EXAMPLE, free_port, rss_bytes, serve_process  # noqa: E402


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "fastsam_onnx", "serve", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_non_loopback_host_without_key_is_refused():
    p = run_cli("--host", "0.0.0.0", "--port", str(free_port()), env={"FASTSAM_ONNX_API_KEY": ""})
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "API key" in p.stderr and "--insecure" in p.stderr
    p = run_cli("--concurrency", "0")
    assert p.returncode == 2 and "--concurrency" in p.stderr


def test_bad_model_exits_2_with_one_line(tmp_path):
    p = run_cli("--model", str(tmp_path / "missing"), "--port", str(free_port()))
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("fastsam-onnx serve: error")]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr


def test_chunked_upload_is_refused_while_streaming():
    with serve_process("--max-upload-mb", "1") as (_proc, url):
        port = int(url.rsplit(":", 1)[1])
        sent = 0
        chunk = b"\0" * (256 << 10)
        reply = b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(256):  # up to 64 MiB
                    if select.select([s], [], [], 0.02)[0]:
                        break
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            s.settimeout(10)
            try:
                while b"\r\n\r\n" not in reply:
                    part = s.recv(65536)
                    if not part:
                        break
                    reply += part
            except ConnectionResetError:
                pass
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 16 << 20, f"sent {sent >> 20} MiB before the 413"


def _big_image() -> bytes:
    im = cv2.resize(cv2.imread(str(EXAMPLE)), (3000, 3000), interpolation=cv2.INTER_NEAREST)
    return cv2.imencode(".png", im)[1].tobytes()


def test_sigterm_lets_in_flight_requests_finish():
    data = _big_image()
    with serve_process("--drain-seconds", "60") as (proc, url):
        results = []

        def request():
            try:
                results.append(httpx.post(url + "/v1/segment", files={"image": ("big.png", data)}, timeout=120).status_code)
            except httpx.HTTPError as e:
                results.append(repr(e))

        t = threading.Thread(target=request)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the request is being served
            info = httpx.get(url + "/v1/info", timeout=5).json()["load"]
            if info["running"] >= 1:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the request never started")
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        assert proc.wait(60) == 0
        assert results == [200]


@pytest.mark.slow
def test_load_4_clients_x_200_requests():
    img = EXAMPLE.read_bytes()
    with serve_process("--concurrency", "1", "--queue", "2", "--cache-mb", "128") as (proc, url):
        first = httpx.post(url + "/v1/segment", files={"image": ("e.jpg", img)}, timeout=60).json()
        image_id = first["image_id"]
        rss0 = rss_bytes(proc.pid)
        statuses: list[list[int]] = [[] for _ in range(4)]

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                for i in range(200):
                    if i % 20 == 0:  # a fresh segment-everything run (new settings → a new cache entry)
                        r = c.post("/v1/segment", files={"image": ("e.jpg", img)}, data={"conf": str(0.2 + 0.001 * (k * 200 + i))})
                    elif i % 2:
                        r = c.post("/v1/prompt", json={"image_id": image_id, "points": [[40 + i, 60 + k]]})
                    else:
                        r = c.post("/v1/prompt", json={"image_id": image_id, "boxes": [[10, 10, 200 + i, 220]]})
                    if r.status_code == 200:
                        assert "instances" in r.json() and r.json()["image_id"]
                    elif r.status_code == 429:
                        assert r.json()["error"]["code"] == "busy" and r.headers["retry-after"]
                    statuses[k].append(r.status_code)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        growth = rss_bytes(proc.pid) - rss0
        flat = [s for per in statuses for s in per]
        assert len(flat) == 800, "lost requests"
        assert set(flat) <= {200, 429}, sorted(set(flat))
        assert all(200 in per for per in statuses)  # every client got answers, not only refusals
        info = httpx.get(url + "/v1/info").json()
        assert info["cache"]["bytes"] <= 128 << 20
        print(f"load: {flat.count(200)} x 200, {flat.count(429)} x 429, RSS +{growth / 2**20:.0f} MiB, cache {info['cache']}")
        assert growth < (128 + 64) << 20, f"RSS grew by {growth >> 20} MiB"  # the cache bound + 64 MiB
