"""Output work spread over the CPU's cores: one small shared thread pool for per-crop and per-band numpy/OpenCV
work (both release the GIL in their loops), so that writing outputs uses the cores inference used.

``$FASTSAM_ONNX_OUTPUT_THREADS`` sets the pool's size (1: everything in the calling thread); default: the CPUs
this process may run on, at most 8. Results come back in input order; an exception in a task is raised in the
caller, as a plain loop would raise it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def workers() -> int:
    """Threads output work may use: ``$FASTSAM_ONNX_OUTPUT_THREADS`` (an int >= 1), else the usable CPUs (<= 8)."""
    text = os.environ.get("FASTSAM_ONNX_OUTPUT_THREADS", "").strip()
    if text:
        try:
            return max(1, min(int(text), 64))
        except ValueError:
            pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, spread over :func:`workers` threads when there is more than one item (a task
    that itself calls parallel_map runs its inner map in its own thread, never waiting on the pool)."""
    items = list(items)
    n = workers()
    if n <= 1 or len(items) <= 1 or getattr(_local, "inside", False):
        return [fn(x) for x in items]
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers != n:  # noqa: SLF001 - made again when the setting changed
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastsam-onnx-output")
        pool = _pool

    def task(x: T) -> R:
        _local.inside = True
        try:
            return fn(x)
        finally:
            _local.inside = False

    return list(pool.map(task, items))


def chunks(n: int, parts: int, minimum: int = 1) -> list[tuple[int, int]]:
    """[start, stop) ranges splitting ``range(n)`` into about ``parts`` pieces of at least ``minimum`` each."""
    if n <= 0:
        return []
    size = max(minimum, -(-n // max(parts, 1)))
    return [(a, min(n, a + size)) for a in range(0, n, size)]
