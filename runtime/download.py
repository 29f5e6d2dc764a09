"""Torch-free downloads of model checkpoints (urllib): cached, resumable, verified.

A file is fetched to ``<name>.part`` (resumed with an HTTP ``Range`` request when a partial file is
there), its SHA-256 checked, and only then renamed to ``<name>``. Environment:

- ``FASTSAM_ONNX_CACHE``: cache directory (default ``~/.cache/fastsam-onnx``);
- ``FASTSAM_ONNX_OFFLINE=1``: no network at all; a download raises :class:`FastSAMError` at once.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .errors import BadArgumentError, DownloadError

__all__ = ["CHUNK", "DownloadError", "cache_dir", "offline", "download", "fetch_checkpoint"]

CHUNK = 1 << 16

def cache_dir() -> Path:
    """``$FASTSAM_ONNX_CACHE`` or ``~/.cache/fastsam-onnx`` (not created here)."""
    env = os.environ.get("FASTSAM_ONNX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fastsam-onnx"


def offline() -> bool:
    """True when ``$FASTSAM_ONNX_OFFLINE`` is set to 1/true/yes."""
    return os.environ.get("FASTSAM_ONNX_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class _Progress:
    """tqdm when it is installed, else one self-overwriting stderr line (at most 5 updates a second)."""

    def __init__(self, total: Optional[int], initial: int, desc: str, enabled: bool):
        self.bar = None
        self.enabled = enabled
        self.total, self.n, self.desc, self.last = total, initial, desc, 0.0
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)
        except ImportError:
            pass

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last > 0.2:
            self.last = time.monotonic()
            done = f"{self.n / 2**20:.1f} MiB" + (f" / {self.total / 2**20:.1f} MiB" if self.total else "")
            print(f"\r{self.desc}: {done}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: Optional[str],
    *,
    size: Optional[int] = None,
    verify: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
    opener: Callable[..., object] = urllib.request.urlopen,
) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already exists; returns ``dest``.

    sha256: expected hex digest; None refuses (the file could not be verified) unless ``verify=False``.
    A ``dest.part`` left by an interrupted run is resumed with ``Range: bytes=N-`` (a server that answers
    200 instead of 206 restarts it). On a checksum mismatch the partial file is deleted. Raises
    :class:`DownloadError` (a :class:`FastSAMError`) for every failure.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    if verify and sha256 is None:
        raise DownloadError(
            f"no published SHA-256 for {url}: the file cannot be verified; pass --no-verify (verify=False) "
            "to download it anyway"
        )
    if offline():
        raise DownloadError(f"offline (FASTSAM_ONNX_OFFLINE is set): cannot download {url}; unset it or copy {dest.name} to {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "fastsam-onnx"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the partial file is already complete (or longer than the file)
            return _finish(part, dest, sha256, verify, url)
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}; try again later") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot download {url}: {getattr(e, 'reason', e)}; check the network or set FASTSAM_ONNX_OFFLINE=1") from None
    with response:
        status = getattr(response, "status", 200)
        if start and status != 206:
            start = 0  # no range support: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else size
        bar = _Progress(total, start, dest.name, progress)
        try:
            with open(part, "ab" if start else "wb") as f:
                while block := response.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
        except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
            raise DownloadError(
                f"download of {url} interrupted after {part.stat().st_size:,} bytes ({e}); run again to resume"
            ) from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadError(f"download of {url} interrupted: {got:,} of {total:,} bytes; run again to resume")
    return _finish(part, dest, sha256, verify, url)


def _finish(part: Path, dest: Path, sha256: Optional[str], verify: bool, url: str) -> Path:
    if verify and sha256 is not None:
        actual = _sha256(part)
        if actual != sha256:
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: got SHA-256 {actual}, expected {sha256}; the partial file was deleted, run again")
    os.replace(part, dest)
    return dest


def fetch_checkpoint(name: str, *, verify: bool = True, progress: bool = True) -> Path:
    """Download the checkpoint of registry model ``name`` into ``cache_dir()/checkpoints``; returns its path."""
    from .models.registry import find_model, list_models

    desc = find_model(name)
    if desc is None:
        raise BadArgumentError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    if desc.local is not None:
        raise BadArgumentError(f"{desc.name} ships with the package at {desc.local}; nothing to fetch")
    src = desc.source
    return download(src.url, cache_dir() / "checkpoints" / src.filename, src.sha256, size=src.size, verify=verify, progress=progress)
