"""The per-request deadline inside the inference pool's worker threads (see :mod:`.engine`): a call carries its
deadline to its thread, and the work checks it between stages and batches (:func:`check_deadline`)."""

from __future__ import annotations

import threading
import time

__all__ = ["DeadlineExceeded", "check_deadline"]

_local = threading.local()


class DeadlineExceeded(Exception):
    """The request did not finish within the per-request deadline (HTTP 504)."""


class _Deadline:
    """The deadline (monotonic s) of one pool call, and whether the request has already been answered 504."""

    def __init__(self, at: float, timeout: float):
        self.at, self.timeout, self.cancelled = at, timeout, False


def check_deadline() -> None:
    """In a pool worker: raise :class:`DeadlineExceeded` when the running call's request is past its deadline."""
    d = getattr(_local, "deadline", None)
    if d is not None and (d.cancelled or time.monotonic() > d.at):
        raise DeadlineExceeded(f"the request did not finish within the deadline of {d.timeout:g} s")
