"""Progress reporting for long runs (folders, videos, exports, benchmarks, downloads).

On a terminal a tqdm bar on stderr; when stderr is not a TTY (logs, CI) plain lines, at most one every
``interval`` seconds plus the last; nothing at all when ``enabled`` is False (``--quiet``).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

__all__ = ["Progress", "clean"]

_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f"}
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})  # C1 controls (e.g. CSI 0x9b)


def clean(text: object) -> str:
    """``text`` safe to print on one terminal line: control characters (ESC, CR, LF, BEL, C1 ...) become
    visible ``\\xNN`` escapes, so a file name cannot inject terminal escapes or break a log line."""
    return str(text).translate(_CONTROL)


class Progress:
    """A progress indicator for ``total`` items (None: unknown) on ``stream`` (default stderr).

    Use :meth:`update` per item (with an optional one-line ``status``), :meth:`write` for messages that must
    not be overwritten by the bar, and :meth:`close` (or ``with``) at the end.
    """

    def __init__(
        self,
        total: Optional[int],
        desc: str,
        *,
        enabled: bool = True,
        unit: str = "it",
        unit_scale: bool = False,
        initial: int = 0,
        interval: float = 5.0,
        stream: Optional[IO[str]] = None,
    ):
        self.total, self.desc, self.enabled, self.unit = total, clean(desc), enabled, unit
        self.n, self.interval, self.stream = initial, interval, stream or sys.stderr
        self._last = time.monotonic()
        self._bar = None
        self._status = ""
        if enabled and _isatty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=self.desc, unit=unit, unit_scale=unit_scale,
                unit_divisor=1024 if unit_scale else 1000, file=self.stream, dynamic_ncols=True, leave=True,
            )

    def update(self, n: int = 1, status: str | None = None) -> None:
        """Count ``n`` more items; ``status`` is shown beside the bar (TTY) or on the next plain line."""
        self.n += n
        if status is not None:
            self._status = clean(status)
        if self._bar is not None:
            if status is not None:
                self._bar.set_postfix_str(self._status, refresh=False)
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.interval:
            self._line()

    def write(self, message: str) -> None:
        """Print one message line (sanitized) without breaking the bar; shown even when disabled."""
        message = clean(message)
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def _line(self) -> None:
        self._last = time.monotonic()
        of = f"/{self.total}" if self.total is not None else ""
        status = f" {self._status}" if self._status else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{status}", file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar (TTY) or print the last plain line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.n:
            self._line()
        self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
