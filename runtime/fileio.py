"""Atomic output files: everything the package writes appears whole or not at all.

Each writer goes to a temporary file in the destination's own directory (same file system) and renames it
into place with :func:`os.replace` only once it is complete, so a run killed mid-write leaves the old file (or
nothing) and at most a ``.NAME.*.tmp`` file, never a truncated output that a later ``--skip-existing`` would keep.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_imwrite"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _mode_for(dest: Path) -> int:
    """The permission bits ``dest`` gets: those of the file it replaces, else 0666 minus the umask."""
    try:
        return dest.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest`` (same suffix, so OpenCV writers pick the same format); on a
    clean exit it is renamed to ``dest``, on an exception it is deleted and ``dest`` is left untouched."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    tmp_path = Path(tmp)
    try:  # mkstemp makes 0600 files: give the output the mode a plain open() would (or the replaced file's)
        os.fchmod(fd, _mode_for(dest))
    except (AttributeError, OSError):
        pass
    finally:
        os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically (flushed and fsynced before the rename); returns ``dest``."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically; returns ``dest``."""
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as compact JSON plus a newline to ``dest`` atomically; returns ``dest``."""
    return atomic_write_text(dest, json.dumps(data, separators=(",", ":")) + "\n")


def atomic_imwrite(dest: str | os.PathLike[str], image: Any) -> bool:
    """Encode an (H, W, 3) BGR uint8 image by ``dest``'s extension (OpenCV) and write it atomically.

    Returns False (and writes nothing) when OpenCV cannot encode to that extension.
    """
    import cv2

    try:
        ok, buf = cv2.imencode(Path(dest).suffix or ".png", image)
    except cv2.error:  # no encoder for this extension
        ok = False
    if not ok:
        return False
    atomic_write_bytes(dest, buf.tobytes())
    return True
