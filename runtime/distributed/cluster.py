"""Joining a Ray cluster within a stated time, and a local Ray instance that leaves no process behind.

:func:`check_reachable` answers within ``timeout`` seconds whether a Ray cluster answers at an address: first a
TCP connection to HOST:PORT (a closed port or an unknown host fails at once), then a child process that connects
with ``ray.init(address=...)`` and disconnects, killed at the deadline. The child keeps Ray's own retry loop
(minutes against a port that is open but not a Ray GCS) and its log lines out of this process.

:func:`local_instance` starts a local Ray instance for a ``with`` block and, however the block ends (an error,
Ctrl-C, Ctrl-C during ``ray.init``), shuts it down with SIGINT held off, then ends whatever of its processes is still
running (``gcs_server``, ``raylet``, agents, workers: every process started with this instance's tag in its
environment, :data:`TAG_ENV`, found through ``/proc`` or psutil), SIGTERM first, SIGKILL after ``grace`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Iterator

from ..errors import BadArgumentError

__all__ = ["CONNECT_TIMEOUT", "TAG_ENV", "parse_address", "check_reachable", "local_instance", "instance_processes", "end_processes"]

CONNECT_TIMEOUT = 30.0
"""Seconds :func:`check_reachable` waits for a cluster by default (the CLI's ``--connect-timeout``)."""
TAG_ENV = "FASTSAM_ONNX_RAY_INSTANCE"
"""Environment variable that marks the processes of a local instance started by :func:`local_instance`."""

_PROC = os.path.isdir("/proc/self")  # Linux: processes and their environment read from /proc
_PROBE = (
    "import logging, sys\n"
    "import ray\n"
    "ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)\n"
    "print('CPU', ray.cluster_resources().get('CPU', 0), flush=True)\n"
    "ray.shutdown()\n"
)


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST:PORT``; None for ``auto``; BadArgumentError
    for anything else."""
    text = address[len("ray://"):] if address.startswith("ray://") else address
    if text == "auto" and address == "auto":
        return None
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadArgumentError(f"Ray address {address!r}: expected auto or HOST:PORT (port 1-65535)")
    return host, int(port)


def _within(seconds: float, fn, *args) -> Any:
    """``fn(*args)`` in a daemon thread, given up (TimeoutError) after ``seconds``; its exception re-raised."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="fastsam-onnx-ray-probe")
    t.start()
    t.join(max(0.0, seconds))
    if t.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box.get("value")


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Return when a Ray cluster answers at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``; ``$RAY_ADDRESS``
    wins, as in ``ray.init``) within ``timeout`` seconds; else raise :class:`BadArgumentError` saying why, in one
    line, after at most ``timeout`` s (plus the moment it takes to kill the child process)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise BadArgumentError(f"the connect timeout must be a number of seconds > 0, got {timeout!r}")
    address = os.environ.get("RAY_ADDRESS") or address
    if address == "local":
        raise BadArgumentError("Ray address 'local' starts a new instance: leave the address out for that")
    deadline = time.monotonic() + timeout
    target = parse_address(address)
    if target is not None:
        try:
            _within(timeout, lambda: socket.create_connection(target, timeout=timeout).close())
        except TimeoutError:
            raise BadArgumentError(f"cannot reach a Ray cluster at {address}: no answer within {timeout:g} s") from None
        except OSError as e:  # refused, unknown host, no route
            raise BadArgumentError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED=os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:  # run() killed the child
        raise BadArgumentError(
            f"no Ray cluster answered at {address} within {timeout:g} s (is it the head's GCS port, 6379 by default?)"
        ) from None
    if done.returncode != 0 or "CPU" not in done.stdout:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
        why = " ".join(lines[-1].split())[:300] if lines else f"the probe exited with status {done.returncode}"
        raise BadArgumentError(f"cannot connect to a Ray cluster at {address}: {why}")


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def instance_processes(tag: str) -> list[int]:
    """Process ids (this process left out) started with ``TAG_ENV=tag`` in their environment."""
    mark, me = f"{TAG_ENV}={tag}".encode(), os.getpid()
    if _PROC:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        return [p for p in pids if p != me and mark in _environ(p).split(b"\0")]
    try:
        import psutil
    except ImportError:  # neither /proc nor psutil: nothing to look through
        return []
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid != me and proc.environ().get(TAG_ENV) == tag:
                found.append(proc.pid)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    if _PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[-1].split()
        except OSError:
            return False
        return bool(fields) and fields[0] not in (b"Z", b"X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_processes(tag: str, grace: float = 5.0) -> list[int]:
    """SIGTERM every process of :func:`instance_processes`, SIGKILL those left after ``grace`` s; returns the pids
    that were still running (empty when the instance had ended by itself)."""
    pids = instance_processes(tag)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        left = [p for p in pids if _alive(p)]
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, sig)
        end = time.monotonic() + wait
        while left and time.monotonic() < end:
            time.sleep(0.05)
            left = [p for p in left if _alive(p)]
        if not left:
            break
    return pids


@contextlib.contextmanager
def _sigint_held(escape: bool = False) -> Iterator[None]:
    """SIGINT recorded instead of raised inside the block (main thread only), then raised as KeyboardInterrupt
    after it; with ``escape``, a second SIGINT is raised at once (a way out of a block that hangs)."""
    got: list[int] = []

    def record(signum: int, frame: Any) -> None:
        got.append(signum)
        if escape and len(got) > 1:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


@contextlib.contextmanager
def local_instance(grace: float = 5.0, **init_kwargs: Any) -> Iterator[str]:
    """Start a local Ray instance (``ray.init(**init_kwargs)``) for the block; yields its tag. On exit, however
    the block or ``ray.init`` ends, ``ray.shutdown()`` and :func:`end_processes` run with SIGINT held off (a Ctrl-C
    meanwhile is raised after them as KeyboardInterrupt). A Ctrl-C during ``ray.init`` takes effect when it
    returns (a second one at once): interrupted inside, Ray can leave a half-made driver that crashes at exit."""
    import ray

    tag = uuid.uuid4().hex
    old = os.environ.get(TAG_ENV)
    os.environ[TAG_ENV] = tag  # inherited by gcs_server, raylet and, through it, by every worker
    try:
        try:
            with _sigint_held(escape=True):
                ray.init(**init_kwargs)
        finally:
            if old is None:
                os.environ.pop(TAG_ENV, None)
            else:
                os.environ[TAG_ENV] = old
        yield tag
    finally:
        with _sigint_held():
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 - a half-started instance: its processes are ended below
                pass
            end_processes(tag, grace)
