"""Output work spread over the CPU's cores: one small shared thread pool for per-crop and per-band numpy/OpenCV
work (both release the GIL in their loops), so that writing outputs uses the cores inference used.

``$FASTSAM_ONNX_OUTPUT_THREADS`` sets the pool's size (1: everything in the calling thread); default: the CPUs
this process may run on, at most 8. Results come back in input order; an exception in a task is raised in the
caller, as a plain loop would raise it.

Memory: with glibc, every thread that allocates gets a malloc arena of its own, which keeps what it frees; the
pool's threads (and onnxruntime's) would then hold tens of MB that the arena ``segment`` freed could have given
them: +80 MB of peak RSS for the polygons of a ragged 12-MP result, +11 % over ``segment``'s own peak for writing
every output of it, against +8 % with one arena. So :func:`share_malloc_arena` caps glibc's arenas at one
(``mallopt(M_ARENA_MAX, 1)``, what ``MALLOC_ARENA_MAX=1`` does; arenas that exist stay) when the first session
is made and when the pool starts, unless ``$MALLOC_ARENA_MAX`` is set: then that setting stands. Inference
allocates from onnxruntime's own arena; its speed was the same either way here.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_local = threading.local()


_arena_capped = False


def share_malloc_arena() -> None:
    """glibc only, once: new threads allocate from the existing arenas (``mallopt(M_ARENA_MAX, 1)``); see above."""
    global _arena_capped
    if _arena_capped or not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    _arena_capped = True
    try:
        ctypes.CDLL(None).mallopt(ctypes.c_int(-8), ctypes.c_int(1))  # M_ARENA_MAX = -8 in glibc's malloc.h
    except (OSError, AttributeError):  # another C library (musl has no mallopt): nothing to do
        pass


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


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers != n:  # noqa: SLF001 - made again when the setting changed
            if _pool is not None:
                _pool.shutdown(wait=False)
            else:
                share_malloc_arena()
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastsam-onnx-output")
        return _pool


def _nested(fn: Callable[[T], R]) -> Callable[[T], R]:
    def task(x: T) -> R:
        _local.inside = True
        try:
            return fn(x)
        finally:
            _local.inside = False

    return task


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, spread over :func:`workers` threads when there is more than one item (a task
    that itself calls parallel_map runs its inner map in its own thread, never waiting on the pool)."""
    items = list(items)
    n = workers()
    if n <= 1 or len(items) <= 1 or getattr(_local, "inside", False):
        return [fn(x) for x in items]
    return list(_get_pool(n).map(_nested(fn), items))


def parallel_imap(fn: Callable[[T], R], items: Iterable[T], window: int | None = None) -> Iterator[R]:
    """``fn(x)`` for each of ``items``, yielded in order as they finish, with at most ``window`` items (default:
    2 per worker) computed ahead on the pool: the consumer's own work on one result overlaps the pool's on the
    next ones, and what it has not taken yet is never all held at once. Inside a pool task, or with one worker,
    a plain loop. Leaving the loop early cancels what has not started."""
    items = list(items)
    n = workers()
    if n <= 1 or len(items) <= 1 or getattr(_local, "inside", False):
        yield from (fn(x) for x in items)
        return
    pool, task = _get_pool(n), _nested(fn)
    ahead = max(1, window or 2 * n)
    pending: deque = deque()
    try:
        for x in items:
            pending.append(pool.submit(task, x))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


def chunks(n: int, parts: int, minimum: int = 1) -> list[tuple[int, int]]:
    """[start, stop) ranges splitting ``range(n)`` into about ``parts`` pieces of at least ``minimum`` each."""
    if n <= 0:
        return []
    size = max(minimum, -(-n // max(parts, 1)))
    return [(a, min(n, a + size)) for a in range(0, n, size)]
