"""``fastsam-onnx segment`` on many images: the helpers that its folder run (recursively, :mod:`.folder`) and
its video file / camera index run (:mod:`.video`) share with the single-image path (input kind, output checks).

Folder: one JSON per image under ``--out-dir`` (mirroring the folder's tree), one overlay PNG per image under
``--overlays`` and/or one COCO-style JSON (``--coco``). Any per-image failure is reported on one line, counted
and skipped; the exit status is 0 when every image was segmented, 1 when some failed.

Video: frames read with OpenCV from a file or a camera index, masks drawn into ``--out`` (a video file, same
frame rate and size; mp4v for .mp4/.m4v/.mov/.mkv, MJPG for .avi) and/or one JSON line per frame (``--json``).

Every output is written to a temporary file and renamed into place when complete; ``-`` (standard output), a FIFO
or a device is written through and a symlink's target is replaced, the link kept (:mod:`fastsam_onnx.fileio`).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from ..progress import clean
from .usage import UsageError

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_OUT_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
"""Containers ``--out`` can write for a video, and the codec used for each."""

__all__ = [
    "kind_of", "plural", "check_output_file", "check_output_dir", "check_stdout_once", "segment_kwargs", "maybe_atomic",
]


def kind_of(source: str) -> str:
    """"folder", "video" (a video file or a camera index such as "0") or "image"."""
    p = Path(source)
    if p.is_dir():
        return "folder"
    if source.isdigit() and not p.exists():
        return "video"
    return "video" if p.suffix.lower() in VIDEO_EXTS else "image"


def plural(n: int, word: str) -> str:
    """``"1 instance"``, ``"3 instances"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def segment_kwargs(args: argparse.Namespace, prompts: dict) -> dict:
    """Keyword arguments of ``FastSAM.segment`` from the parsed options and the gathered prompts."""
    return dict(
        imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det, retina_masks=not args.no_retina,
        point_mode=args.point_mode, text_mode=args.text_mode, **prompts,
    )


def _probe_dir(d: Path, flag: str) -> None:
    try:  # os.access is wrong for root and read-only mounts: create (and drop) a real file
        with tempfile.TemporaryFile(dir=d, prefix=".fastsam-onnx-probe."):
            pass
    except OSError as e:
        raise UsageError(f"{flag}: cannot write in {clean(d)}: {e.strerror or e}") from None


def check_output_file(path: Path | None, flag: str) -> None:
    """Refuse (UsageError) an output file that is a directory or whose directory is missing or unwritable.

    ``-`` (standard output), a FIFO or a device is accepted as it is (written through, see
    :func:`fastsam_onnx.fileio.output_target`); a symlink is checked as the file it points to."""
    from ..fileio import output_target

    if path is None:
        return
    try:
        target, through = output_target(path)
    except IsADirectoryError:
        raise UsageError(f"{flag} {clean(path)} is a directory, expected a file name") from None
    except OSError as e:  # a symlink loop, a path through a file, ...
        raise UsageError(f"{flag}: cannot write {clean(path)}: {e.strerror or e}") from None
    if through or target is None:
        return
    if not target.parent.is_dir():
        raise UsageError(f"{flag}: output directory does not exist: {clean(target.parent)}")
    _probe_dir(target.parent, flag)


def check_stdout_once(args: argparse.Namespace) -> None:
    """Refuse (UsageError) more than one output given as ``-`` (standard output holds one file)."""
    from ..fileio import is_stdout

    flags = [f"--{name}" for name in ("json", "coco", "out", "embeddings", "edges") if is_stdout(getattr(args, name, None))]
    if len(flags) > 1:
        raise UsageError(f"only one output can go to standard output ('-'), got {' and '.join(flags)}")


def check_output_dir(path: Path | None, flag: str) -> None:
    """Create the output folder ``path`` (with parents); refuse (UsageError) a file there or an unwritable one."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {clean(path)} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag}: cannot create directory {clean(path)}: {e.strerror or e}") from None
    _probe_dir(path, flag)


@contextlib.contextmanager
def _nothing():
    yield None


def maybe_atomic(path: Path | None):
    """``fileio.atomic_path(path)``, or a context yielding None when ``path`` is None."""
    from ..fileio import atomic_path

    return _nothing() if path is None else atomic_path(path)
