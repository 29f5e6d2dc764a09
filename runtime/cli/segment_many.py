"""``fastsam-onnx segment`` on many images: a folder (recursively, :mod:`.folder`) or a video file / camera
index (:mod:`.video`), plus the helpers both share with the single-image path (input kind, output checks).

Folder: one JSON per image under ``--out-dir`` (mirroring the folder's tree), one overlay PNG per image under
``--overlays`` and/or one COCO-style JSON (``--coco``). Any per-image failure is reported on one line, counted
and skipped; the exit status is 0 when every image was segmented, 1 when some failed.

Video: frames read with OpenCV from a file or a camera index, masks drawn into ``--out`` (a video file, same
frame rate and size; mp4v for .mp4/.m4v/.mov/.mkv, MJPG for .avi) and/or one JSON line per frame (``--json``).

Every output is written to a temporary file and renamed into place when complete (:mod:`fastsam_onnx.fileio`).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from ..progress import clean

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_OUT_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
"""Containers ``--out`` can write for a video, and the codec used for each."""

__all__ = ["kind_of", "list_images", "plural", "check_output_file", "check_output_dir", "run_folder", "run_video"]


def kind_of(source: str) -> str:
    """"folder", "video" (a video file or a camera index such as "0") or "image"."""
    p = Path(source)
    if p.is_dir():
        return "folder"
    if source.isdigit() and not p.exists():
        return "video"
    return "video" if p.suffix.lower() in VIDEO_EXTS else "image"


def list_images(folder: Path, exclude: tuple[Path | None, ...] = ()) -> list[Path]:
    """Image files under ``folder`` (recursively, by extension), sorted; files under any ``exclude``
    folder (the run's own output folders, which may lie inside ``folder``) are left out."""
    skip = [e.resolve() for e in exclude if e is not None]
    out = []
    for p in folder.rglob("*"):
        if p.suffix.lower() in IMAGE_EXTS and p.is_file():
            rp = p.resolve()
            if not any(rp.is_relative_to(s) for s in skip):
                out.append(p)
    return sorted(out)


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
    from . import UsageError

    try:  # os.access is wrong for root and read-only mounts: create (and drop) a real file
        with tempfile.TemporaryFile(dir=d, prefix=".fastsam-onnx-probe."):
            pass
    except OSError as e:
        raise UsageError(f"{flag}: cannot write in {clean(d)}: {e.strerror or e}") from None


def check_output_file(path: Path | None, flag: str) -> None:
    """Refuse (UsageError) an output file that is a directory or whose directory is missing or unwritable."""
    from . import UsageError

    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{flag} {clean(path)} is a directory, expected a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{flag}: output directory does not exist: {clean(path.parent)}")
    _probe_dir(path.parent, flag)


def check_output_dir(path: Path | None, flag: str) -> None:
    """Create the output folder ``path`` (with parents); refuse (UsageError) a file there or an unwritable one."""
    from . import UsageError

    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {clean(path)} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag}: cannot create directory {clean(path)}: {e.strerror or e}") from None
    _probe_dir(path, flag)


def one_line(e: BaseException) -> str:
    """An exception as one sanitized line: typed errors by message, others with their type name."""
    from ..errors import FastSAMError

    text = " ".join(str(e).split())
    if not isinstance(e, FastSAMError):
        kind = type(e).__qualname__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__qualname__}"
        text = f"{kind}: {text}" if text else kind
    return clean(text)


@contextlib.contextmanager
def _nothing():
    yield None


def maybe_atomic(path: Path | None):
    """``fileio.atomic_path(path)``, or a context yielding None when ``path`` is None."""
    from ..fileio import atomic_path

    return _nothing() if path is None else atomic_path(path)


def run_folder(args: argparse.Namespace, model, prompts: dict) -> int:
    """See :func:`fastsam_onnx.cli.folder.run_folder`."""
    from .folder import run_folder as run

    return run(args, model, prompts)


def run_video(args: argparse.Namespace, model, prompts: dict) -> int:
    """See :func:`fastsam_onnx.cli.video.run_video`."""
    from .video import run_video as run

    return run(args, model, prompts)
