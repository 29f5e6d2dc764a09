"""Output files: everything the package writes appears whole or not at all, at the path the user named.

What a destination gets depends on what is there (:func:`output_target`):

* a regular file or a new path: the writer goes to a temporary file in the destination's own directory (same
  file system) and renames it into place with :func:`os.replace` only once it is complete, so a run killed
  mid-write leaves the old file (or nothing) and at most a ``.NAME.*.tmp`` file, never a truncated output that a
  later ``--skip-existing`` would keep;
* a symlink: the link is followed and its target is written as above (atomically, in the target's directory),
  so the link itself stays a link; a dangling link creates its target;
* anything else that is not a directory (a FIFO, a character device such as ``/dev/stdout`` or ``/dev/null``, a
  socket): opened and written through in place, never replaced (a rename would swap the pipe or device for a
  regular file);
* ``"-"``: standard output (``sys.stdout``'s binary buffer; text already printed there is flushed first).

Writers that need a real file name (:func:`atomic_path`, e.g. for ``cv2.VideoWriter``) get one in the temporary
directory for the last two kinds; its bytes are copied to the destination once the writer is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

__all__ = [
    "STDOUT", "is_stdout", "output_target", "image_suffix", "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
    "atomic_imwrite",
]

STDOUT = "-"
"""The destination name that means standard output."""


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


def is_stdout(dest: str | os.PathLike[str] | None) -> bool:
    """True when ``dest`` is ``"-"`` (standard output)."""
    return dest is not None and os.fspath(dest) == STDOUT


def image_suffix(dest: str | os.PathLike[str]) -> str:
    """The extension that picks ``dest``'s image format (lower case): its own, ``.png`` when it has none
    (``-``, ``/dev/stdout``, a FIFO named without one)."""
    return Path(dest).suffix.lower() or ".png"


def output_target(dest: str | os.PathLike[str]) -> tuple[Path | None, bool]:
    """Where a write to ``dest`` goes and how: ``(path, through)``.

    ``path`` is None for ``"-"`` (standard output), the target of a symlink to a regular file or to nothing (a
    dangling link: the target is created), else ``dest``; ``through``
    is True when ``path`` is opened and written in place (standard output, a FIFO, a device, a socket) and False
    when it gets a temporary file renamed over it (a regular file or a new path). Raises IsADirectoryError for a
    directory (or a link to one)."""
    if is_stdout(dest):
        return None, True
    path = Path(dest)
    try:
        mode = path.stat().st_mode  # through any links, including /dev/stdout's magic link onto a pipe
    except (FileNotFoundError, NotADirectoryError):  # a new path, or a dangling link: its target is created
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"is a directory: {dest}")
    if mode is not None and not stat.S_ISREG(mode):
        return path, True  # opened by the name given: the kernel follows the links
    return (Path(os.path.realpath(path)) if path.is_symlink() else path), False


@contextlib.contextmanager
def _through(path: Path | None) -> Iterator[BinaryIO]:
    """A binary stream onto standard output (``path`` None) or onto ``path`` opened in place."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()  # what was printed before comes first (also for /dev/stdout)
    if path is not None:
        with open(path, "wb") as f:
            yield f
        return
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # a text-only stand-in (io.StringIO): bytes go in as UTF-8 text
        buf = _TextSink(sys.stdout)
        yield buf  # type: ignore[misc]
    else:
        yield out
        out.flush()


class _TextSink:
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        self.stream.write(data.decode("utf-8", errors="replace"))
        return len(data)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``dest``'s content to (same suffix, so OpenCV writers pick the same
    format); on a clean exit it becomes ``dest`` (renamed into place beside a regular file or a new path,
    copied into standard output, a FIFO or a device), on an exception it is deleted and ``dest`` is left
    untouched."""
    path, through = output_target(dest)
    name = Path(dest).name if path is None else path.name
    where = None if through else path.parent  # type: ignore[union-attr]  # (not through: a path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{Path(name).suffix}", dir=where)
    tmp_path = Path(tmp)
    try:  # mkstemp makes 0600 files: give the output the mode a plain open() would (or the replaced file's)
        if not through:
            os.fchmod(fd, _mode_for(path))  # type: ignore[arg-type]
    except (AttributeError, OSError):
        pass
    finally:
        os.close(fd)
    try:
        yield tmp_path
        if through:
            with open(tmp_path, "rb") as src, _through(path) as out:
                shutil.copyfileobj(src, out)
            tmp_path.unlink()
        else:
            os.replace(tmp_path, path)  # type: ignore[arg-type]
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes, or parts of it written one after the other) to ``dest`` (atomically where it is a
    regular file or a new path, flushed and fsynced before the rename; written through for ``"-"``, a FIFO or a
    device); returns ``dest``."""
    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    path, through = output_target(dest)
    if through:
        with _through(path) as out:
            for part in parts:
                out.write(part)
        return Path(dest)
    with atomic_path(path) as tmp:  # type: ignore[arg-type]
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str | Iterable[str]) -> Path:
    """Write ``text`` (UTF-8; a string, or parts of one, each encoded as it is written: a big text is never
    held twice) to ``dest`` as :func:`atomic_write_bytes` does; returns ``dest``."""
    if isinstance(text, str):
        return atomic_write_bytes(dest, text.encode("utf-8"))
    return atomic_write_bytes(dest, (part.encode("utf-8") for part in text))


def atomic_write_json(dest: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as compact JSON plus a newline to ``dest`` as :func:`atomic_write_bytes` does."""
    return atomic_write_text(dest, json.dumps(data, separators=(",", ":")) + "\n")


def atomic_imwrite(dest: str | os.PathLike[str], image: Any) -> bool:
    """Encode an (H, W, 3) BGR uint8 image by ``dest``'s extension (OpenCV; PNG without one) and write it as
    :func:`atomic_write_bytes` does.

    Returns False (and writes nothing) when OpenCV cannot encode to that extension.
    """
    import cv2

    try:
        ok, buf = cv2.imencode(image_suffix(dest), image)
    except cv2.error:  # no encoder for this extension
        ok = False
    if not ok:
        return False
    atomic_write_bytes(dest, buf.data)  # the encoded buffer itself, not a copy of it
    return True
