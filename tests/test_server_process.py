"""A real `fastsam-onnx serve` process on 127.0.0.1: start-up refusals, the 413 of a chunked upload while it
streams (raw socket), SIGTERM draining, and a bounded load test (4 clients x 200 requests: only 200/429, no
lost request, RSS growth under the 128 MiB cache bound + 64 MiB). Every loop is bounded; traffic stays on
loopback."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from serverkit import EXAMPLE, free_port, rss_bytes, serve_process  # noqa: E402


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
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


#: a sitecustomize for the served process: every ``FastSAM.segment`` call touches $HOLD_ENTERED, then waits
#: (at most 120 s) until $HOLD_RELEASE exists, so the test decides when the request in flight may finish
HOLD = """
import os, time
import fastsam_onnx

_segment = fastsam_onnx.FastSAM.segment

def _held(self, *args, **kwargs):
    open(os.environ["HOLD_ENTERED"], "w").close()
    for _ in range(12000):
        if os.path.exists(os.environ["HOLD_RELEASE"]):
            break
        time.sleep(0.01)
    return _segment(self, *args, **kwargs)

fastsam_onnx.FastSAM.segment = _held
"""


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    """SIGTERM while a request is held inside ``segment`` (by construction: it cannot finish before the test
    releases it): the server stops listening but keeps running, the request is still unanswered; once released
    it completes with 200 and the process exits 0."""
    site, entered, release = tmp_path / "site", tmp_path / "entered", tmp_path / "release"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HOLD)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p),
           "HOLD_ENTERED": str(entered), "HOLD_RELEASE": str(release)}
    with serve_process("--drain-seconds", "60", env=env) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        results = []

        def request():
            try:
                r = httpx.post(url + "/v1/segment", files={"image": ("e.jpg", EXAMPLE.read_bytes())}, timeout=120)
                results.append((r.status_code, len(r.json().get("instances", []))))
            except httpx.HTTPError as e:
                results.append(repr(e))

        t = threading.Thread(target=request)
        t.start()
        for _ in range(3000):  # hang guard: 30 s
            if entered.exists():
                break
            time.sleep(0.01)
        else:
            pytest.fail("the request never reached segment")
        assert httpx.get(url + "/v1/info", timeout=5).json()["load"]["running"] == 1
        assert results == [] and t.is_alive()  # held: still running when the signal arrives
        proc.send_signal(signal.SIGTERM)
        for _ in range(300):  # the signal is taken: no new connections (hang guard: about 30 s)
            if _refuses_connections(port):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the server still accepts connections after SIGTERM")
        time.sleep(1)  # (only makes the check stricter: a server that gave up on the request would be gone by now)
        assert proc.poll() is None and results == [] and t.is_alive()  # draining: alive, the request unanswered
        release.touch()
        t.join(120)
        assert proc.wait(60) == 0, proc.stderr.read()
        assert len(results) == 1 and results[0][0] == 200 and results[0][1] > 0, results


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
