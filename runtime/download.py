"""Torch-free downloads of model checkpoints (urllib): cached, resumable, verified, bounded.

A file is fetched to ``<name>.part`` (resumed with an HTTP ``Range`` request when a partial file is
there), its size and SHA-256 checked, and only then renamed to ``<name>``. A file already there is checked
the same way before it is used (a corrupt one is moved aside to ``<name>.corrupt``). A transfer never takes
more bytes than declared, nor longer than its deadline. Environment:

- ``FASTSAM_ONNX_CACHE``: cache directory (default ``~/.cache/fastsam-onnx``);
- ``FASTSAM_ONNX_OFFLINE=1``: no network at all; a download raises :class:`DownloadError` at once;
- ``FASTSAM_ONNX_DOWNLOAD_DEADLINE``: seconds one download may take in all (default 3600; run again to resume).
"""

from __future__ import annotations

import http.client
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .errors import BadArgumentError, DownloadError
from .manifest import sha256_file
from .progress import Progress

__all__ = [
    "CHUNK", "DEFAULT_DEADLINE", "DownloadError", "cache_dir", "offline", "download_deadline", "download",
    "fetch_checkpoint",
]

CHUNK = 1 << 16
DEFAULT_DEADLINE = 3600.0  # seconds
_PSEUDO_FS = (Path("/proc"), Path("/sys"), Path("/dev"))
_TMPFS_OK = (Path("/dev/shm"),)


def cache_dir() -> Path:
    """``$FASTSAM_ONNX_CACHE`` or ``~/.cache/fastsam-onnx`` (not created here)."""
    env = os.environ.get("FASTSAM_ONNX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fastsam-onnx"


def offline() -> bool:
    """True when ``$FASTSAM_ONNX_OFFLINE`` is set to 1/true/yes."""
    return os.environ.get("FASTSAM_ONNX_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_deadline() -> float:
    """``$FASTSAM_ONNX_DOWNLOAD_DEADLINE`` (seconds, > 0) or :data:`DEFAULT_DEADLINE`."""
    env = os.environ.get("FASTSAM_ONNX_DOWNLOAD_DEADLINE", "").strip()
    if not env:
        return DEFAULT_DEADLINE
    try:
        value = float(env)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise BadArgumentError(f"FASTSAM_ONNX_DOWNLOAD_DEADLINE must be a positive number of seconds, got {env!r}")
    return value


def _reason(e: BaseException) -> str:
    return str(getattr(e, "strerror", None) or getattr(e, "reason", None) or e or type(e).__name__)


def _prepare_dir(directory: Path) -> None:
    """Create ``directory``; :class:`DownloadError` when it cannot hold downloads (a file in the way,
    not writable, a pseudo file system such as /proc)."""
    fix = "set FASTSAM_ONNX_CACHE to a writable directory"
    try:
        resolved = directory.expanduser().resolve()
    except (OSError, RuntimeError) as e:
        raise DownloadError(f"cannot use the download directory {directory}: {_reason(e)}; {fix}") from None
    for root in _PSEUDO_FS:
        if (resolved == root or root in resolved.parents) and not any(
            resolved == ok or ok in resolved.parents for ok in _TMPFS_OK
        ):
            raise DownloadError(f"download directory {directory} lies under {root}, a pseudo file system; {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DownloadError(f"download directory {directory} exists and is not a directory; {fix}") from None
    except OSError as e:
        raise DownloadError(f"cannot create the download directory {directory}: {_reason(e)}; {fix}") from None


def _check_cached(dest: Path, sha256: Optional[str], size: Optional[int]) -> None:
    """Raise :class:`DownloadError` (after moving ``dest`` aside) when ``dest`` has the wrong size or digest."""
    try:
        actual_size = dest.stat().st_size
        problem = None
        if size is not None and actual_size != size:
            problem = f"{actual_size:,} bytes, expected {size:,}"
        elif sha256 is not None:
            actual = sha256_file(dest)
            if actual != sha256:
                problem = f"SHA-256 {actual[:12]}…, expected {sha256[:12]}…"
    except OSError as e:
        raise DownloadError(f"cannot read the cached file {dest}: {_reason(e)}") from None
    if problem is None:
        return
    aside = dest.with_name(dest.name + ".corrupt")
    try:
        os.replace(dest, aside)
        what = f"moved to {aside}"
    except OSError:
        try:
            dest.unlink()
            what = "deleted"
        except OSError as e:
            what = f"could not be removed ({_reason(e)}): delete it"
    raise DownloadError(f"the cached file {dest} is corrupt ({problem}); it was {what}; run again to download it afresh")


def _content_length(value: Optional[str], url: str) -> Optional[int]:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():  # also rejects "-5", "1e6", "" and a list "10, 10"
        raise DownloadError(f"download of {url}: the server sent a bad Content-Length {value!r}; try again later")
    return int(text)


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: Optional[str],
    *,
    size: Optional[int] = None,
    verify: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
    deadline: Optional[float] = None,
    opener: Callable[..., object] = urllib.request.urlopen,
) -> Path:
    """Download ``url`` to ``dest``, or check the ``dest`` already there; returns ``dest``.

    sha256: expected hex digest; None refuses (the file could not be verified) unless ``verify=False``.
    size: the exact size in bytes when known: a server announcing another size, or sending more, is refused.
    verify=False also skips checking a file already at ``dest``. timeout: seconds per network operation;
    deadline: seconds for the whole transfer (default :func:`download_deadline`; it may be overrun by at most
    one ``timeout``). A ``dest.part`` left by an interrupted run is resumed with ``Range: bytes=N-`` (a server
    that answers 200 instead of 206 restarts it). On a checksum mismatch the partial file is deleted. Raises
    :class:`DownloadError` (a :class:`FastSAMError`) for every failure.
    """
    dest = Path(dest)
    limit_s = download_deadline() if deadline is None else float(deadline)
    if not (math.isfinite(limit_s) and limit_s > 0):
        raise BadArgumentError(f"download deadline must be a positive number of seconds, got {deadline!r}")
    if dest.is_file():
        if verify:
            _check_cached(dest, sha256, size)
        return dest
    if dest.exists():
        raise DownloadError(f"{dest} exists and is not a file: remove it or set FASTSAM_ONNX_CACHE elsewhere")
    if verify and sha256 is None:
        raise DownloadError(
            f"no published SHA-256 for {url}: the file cannot be verified; pass --no-verify (verify=False) "
            "to download it anyway"
        )
    if offline():
        raise DownloadError(f"offline (FASTSAM_ONNX_OFFLINE is set): cannot download {url}; unset it or copy {dest.name} to {dest}")
    _prepare_dir(dest.parent)
    end = time.monotonic() + limit_s
    part = dest.with_name(dest.name + ".part")
    if part.exists() and not part.is_file():
        raise DownloadError(f"{part} exists and is not a file: remove it")
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:  # longer than the file: not a prefix of it
        part.unlink()
        start = 0
    request = urllib.request.Request(url, headers={"User-Agent": "fastsam-onnx"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = opener(request, timeout=min(timeout, limit_s))
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the partial file is already complete (or longer than the file)
            return _finish(part, dest, sha256, verify, url)
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}; try again later") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot download {url}: {_reason(e)}; check the network or set FASTSAM_ONNX_OFFLINE=1") from None
    with response:
        if start and getattr(response, "status", 200) != 206:
            start = 0  # no range support: start over
        length = _content_length(response.headers.get("Content-Length"), url)
        total = start + length if length is not None else size
        if size is not None and total != size:
            if start:
                part.unlink()
            raise DownloadError(
                f"download of {url}: the server announces {total:,} bytes, expected {size:,}; not the expected file"
                + ("; the partial file was deleted" if start else "") + ", try again later"
            )
        got = _receive(response, part, start, total, end, limit_s, url, Progress(
            total, dest.name, enabled=progress, unit="B", unit_scale=True, initial=start
        ))
    if total is not None and got < total:
        raise DownloadError(f"download of {url} interrupted: {got:,} of {total:,} bytes; run again to resume")
    return _finish(part, dest, sha256, verify, url)


def _receive(response, part: Path, start: int, total: Optional[int], end: float, limit_s: float, url: str,
             bar: Progress) -> int:
    """Append the response body to ``part`` (from byte ``start``); returns the size of ``part``."""
    read = getattr(response, "read1", None) or response.read  # read1: one recv, so the deadline is seen
    got, overrun = start, False
    try:
        try:
            f = open(part, "ab" if start else "wb")
        except OSError as e:
            raise DownloadError(f"cannot write {part}: {_reason(e)}; set FASTSAM_ONNX_CACHE to a writable directory") from None
        with f:
            while True:
                if time.monotonic() > end:
                    raise DownloadError(
                        f"download of {url} ran past its deadline of {limit_s:g} s after {got:,} bytes (a slow or "
                        "stalled server); run again to resume, or raise FASTSAM_ONNX_DOWNLOAD_DEADLINE"
                    )
                try:
                    block = read(CHUNK if total is None else min(CHUNK, total - got + 1))
                except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                    raise DownloadError(
                        f"download of {url} interrupted after {got:,} bytes ({_reason(e)}); run again to resume"
                    ) from None
                if not block:
                    break
                if total is not None and got + len(block) > total:
                    overrun = True
                    break
                try:
                    f.write(block)
                except OSError as e:
                    raise DownloadError(
                        f"cannot write {part}: {_reason(e)}; free some space (or set FASTSAM_ONNX_CACHE) and run again to resume"
                    ) from None
                got += len(block)
                bar.update(len(block))
    finally:
        bar.close()
    if overrun:
        part.unlink()
        raise DownloadError(
            f"download of {url}: the server sent more than the expected {total:,} bytes; not the expected file, "
            "the partial file was deleted"
        )
    return got


def _finish(part: Path, dest: Path, sha256: Optional[str], verify: bool, url: str) -> Path:
    try:
        if verify and sha256 is not None:
            actual = sha256_file(part)
            if actual != sha256:
                part.unlink()
                raise DownloadError(
                    f"checksum mismatch for {url}: got SHA-256 {actual}, expected {sha256}; the partial file was "
                    "deleted, run again"
                )
        os.replace(part, dest)
    except OSError as e:
        raise DownloadError(f"cannot store the download {dest}: {_reason(e)}") from None
    return dest


def fetch_checkpoint(name: str, *, verify: bool = True, progress: bool = True, deadline: Optional[float] = None) -> Path:
    """Download (or check the cached copy of) registry model ``name``'s checkpoint into
    ``cache_dir()/checkpoints``; returns its path. deadline: seconds, see :func:`download`."""
    from .models.registry import find_model, list_models

    desc = find_model(name)
    if desc is None:
        raise BadArgumentError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    if desc.local is not None:
        raise BadArgumentError(f"{desc.name} ships with the package at {desc.local}; nothing to fetch")
    src = desc.source
    return download(
        src.url, cache_dir() / "checkpoints" / src.filename, src.sha256, size=src.size, verify=verify,
        progress=progress, deadline=deadline,
    )
