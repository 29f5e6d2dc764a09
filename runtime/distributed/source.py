"""Sources of a distributed run: which images (listing) and how one image's pixels are read (decoding).

A source is a local folder (recursively, the same listing as the CLI's folder mode:
:func:`fastsam_onnx.image.list_images`), one image file, a list of paths, or a URI that a pyarrow
file system reads (``s3://bucket/prefix/``, ``gs://...``, ``hdfs://...``, ``file:///...``; a folder URI is
listed recursively with the same extensions). Every item is a pair ``(path, source)``: ``path`` is what the
CLI writes into its per-image JSON (relative to the folder for a folder, as given otherwise) and ``source``
the location a worker reads.

Local files are read by :func:`fastsam_onnx.image.read_image` (what ``FastSAM.segment(path)`` does), URIs by
:func:`read_uri` + :func:`decode_bytes`, which repeat ``read_image``'s checks on the bytes in the same order
(file-size limit from the file system's size before any byte is read, pixel limit from the header before any
pixel is decoded, then ``cv2.imdecode``): the same pixels and the same errors, never a second decoder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from ..errors import BadArgumentError, BadImageError
from ..image import IMAGE_EXTS, MAX_PIXELS, check_bytes, file_limit, list_images

__all__ = ["Source", "is_uri", "list_source", "read_uri", "decode_bytes", "load_source"]

Source = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]
"""A folder, an image file, a URI, or a list of image paths / URIs."""

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` (two or more letters, so a Windows drive ``C:/`` is a path)."""
    return bool(_URI.match(text))


def _list_uri(uri: str) -> list[tuple[str, str]]:
    import pyarrow.fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(base)
    except (OSError, ValueError, TypeError) as e:  # pyarrow raises ArrowInvalid (a ValueError) / OSError
        raise BadArgumentError(f"cannot open source {uri}: {' '.join(str(e).split())}") from None
    if info.type == pafs.FileType.File:
        return [(uri, uri)]
    if info.type != pafs.FileType.Directory:
        raise BadArgumentError(f"source not found: {uri}")
    prefix = uri.rstrip("/")
    out = []
    for f in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if f.type == pafs.FileType.File and os.path.splitext(f.path)[1].lower() in IMAGE_EXTS:
            rel = f.path[len(base.rstrip("/")) + 1:]
            out.append((rel, f"{prefix}/{rel}"))
    return sorted(out)


def list_source(source: Source, exclude: Iterable[str | os.PathLike[str] | None] = ()) -> list[tuple[str, str]]:
    """``(path, source)`` pairs of every image of ``source``, sorted by path for a folder (see the module
    docstring); files under any ``exclude`` folder (e.g. the run's output inside the input folder) are left out.
    A missing local folder/file or an unreadable URI raises :class:`BadArgumentError`; an empty list is allowed."""
    if isinstance(source, (list, tuple)):
        items = [os.fspath(s) for s in source]
        bad = [s for s in items if not isinstance(s, str)]
        if bad:
            raise BadArgumentError(f"a list source holds paths or URIs (str), got {type(bad[0]).__name__}")
        return [(s, s) for s in items]
    if not isinstance(source, (str, os.PathLike)):
        raise BadArgumentError(f"source must be a folder, a file, a URI or a list of paths, got {type(source).__name__}")
    text = os.fspath(source)
    if is_uri(text):
        return _list_uri(text)
    p = Path(text)
    if p.is_dir():
        skip = tuple(Path(e) for e in exclude if e is not None)
        return [(str(f.relative_to(p)), str(f)) for f in list_images(p, exclude=skip)]
    if p.exists():
        return [(text, text)]
    raise BadArgumentError(f"source not found: {text} (a folder, an image file, a URI or a list of paths)")


def read_uri(uri: str, max_pixels: int | None = MAX_PIXELS) -> bytes:
    """The bytes of the file at ``uri`` (pyarrow file systems); its size is checked against
    :func:`fastsam_onnx.image.file_limit` before anything is read. Any failure is a :class:`BadImageError`."""
    import pyarrow.fs as pafs

    max_bytes = file_limit(max_pixels)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise BadImageError(f"image file not found: {uri}")
        if info.type != pafs.FileType.File:
            raise BadImageError(f"{uri} is not a regular file: pass an image file")
        if info.size is not None:
            check_bytes(uri, info.size, max_bytes)
        with fs.open_input_stream(path) as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except BadImageError:
        raise
    except (OSError, ValueError, TypeError) as e:
        raise BadImageError(f"cannot read image file {uri}: {' '.join(str(e).split())}") from None
    check_bytes(uri, len(data), max_bytes)  # the file grew after get_file_info
    return data


def decode_bytes(data: bytes, name: str, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes → (H, W, 3) BGR uint8 with :func:`fastsam_onnx.image.read_image`'s checks (``name``
    appears in the messages): :func:`fastsam_onnx.image.decode_image_bytes`."""
    from ..image import decode_image_bytes

    return decode_image_bytes(data, name, max_pixels)


def load_source(source: str, max_pixels: int | None = MAX_PIXELS) -> str | np.ndarray:
    """What a worker gives ``FastSAM.segment``: a local path as it is (read by ``read_image``), a URI's image
    (``file://`` included) read by :func:`read_uri` and decoded by :func:`decode_bytes`."""
    if is_uri(source):
        return decode_bytes(read_uri(source, max_pixels), source, max_pixels)
    return source
