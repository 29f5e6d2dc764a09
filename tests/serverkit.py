"""Helpers of the server tests: a shared demo model, apps around it, and a real `fastsam-onnx serve` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from fastsam_onnx.models import demo_bundle

EXAMPLE = demo_bundle() / "example.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlowModel:
    """Wraps a FastSAM: ``segment`` blocks until :attr:`gate` is set (to hold inference slots in tests)."""

    def __init__(self, model, fail: bool = False):
        self._model = model
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def __getattr__(self, name):
        return getattr(self._model, name)

    def segment(self, *args, **kwargs):
        self.entered.set()
        if self.fail:
            raise RuntimeError("boom /secret/path")
        assert self.gate.wait(30), "test gate never opened"
        return self._model.segment(*args, **kwargs)

    def prompt(self, *args, **kwargs):
        return self._model.prompt(*args, **kwargs)


@contextmanager
def serve_process(*extra: str, env: dict | None = None, port: int | None = None, ready: bool = True) -> Iterator[tuple[subprocess.Popen, str]]:
    """A `fastsam-onnx serve` child on 127.0.0.1 (demo model); yields (process, base URL); stopped after."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "fastsam_onnx", "serve", "--host", "127.0.0.1", "--port", str(port), "-q", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        if ready:
            wait_ready(url, proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
