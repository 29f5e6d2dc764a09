"""Image loading: paths and arrays to the (H, W, 3) BGR uint8 image the pipeline works on.

Conversions follow the reference (ultralytics ``LoadPilAndNumpy`` / ``imread``): 16-bit → high byte,
grayscale → 3 channels, BGRA → BGR, gray + alpha → gray.

Decompression bombs (a tiny file whose header claims a huge image) never decode. :func:`read_image`
refuses, in this order and without reading the file's pixels:

1. anything but a regular file (directory, FIFO, device, socket), from ``os.stat`` before opening it
   (opened with ``O_NONBLOCK`` and checked again with ``fstat``, so a FIFO can never block);
2. a file over the file-size limit (:func:`file_limit`: 1 GiB, or 10 bytes per allowed pixel if more),
   from ``stat`` before anything is read;
3. an image over ``max_pixels``, from its header as read by Pillow's format plugins (JPEG with fill
   bytes or large APPn segments, PNG, BMP, TIFF, GIF, WebP, PPM/PGM/PFM, Sun raster, JPEG 2000, AVIF),
   without Pillow's own decompression-bomb check (no ``DecompressionBombWarning``; its error, raised by
   some plugins, becomes a :class:`BadImageError` too). Pillow only reads the header: pixels are decoded
   by ``cv2.imdecode(IMREAD_COLOR)`` as before.

Radiance ``.hdr``, PAM (``P7``) and PFM, which OpenCV decodes but Pillow cannot read, are sized by their own header
(:func:`_own_size`); with ``max_pixels`` set, any other file whose size no header reader can tell is refused
(:class:`BadImageError`) without being decoded. With ``max_pixels=None`` files are decoded by OpenCV under
OpenCV's own pixel limit (``OPENCV_IO_MAX_IMAGE_PIXELS``) and checked after decoding. OpenCV reads
that environment variable once, when ``cv2`` is imported (setting it later has no effect, tested), so when
it is unset and ``cv2`` is not imported yet, this module sets it to :data:`MAX_PIXELS` for the import and
removes it right after (child processes do not inherit it); :data:`OPENCV_MAX_PIXELS` says which limit is
in effect. When that limit is unknown or above ``max(max_pixels, MAX_PIXELS)`` (``cv2`` was imported
before ``fastsam_onnx`` with the variable unset: OpenCV's default is 2**30), such files are refused rather
than decoded. Consequence: files over 100 MP need ``OPENCV_IO_MAX_IMAGE_PIXELS`` set before
``fastsam_onnx`` (or ``cv2``) is first imported, even with ``max_pixels=None``; arrays are not affected.
Any ``cv2.error`` while decoding is a :class:`BadImageError`.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import threading
import warnings
from pathlib import Path
from typing import IO, Literal, Union

import numpy as np

from .errors import BadImageError, ImageTooLargeError

ImageLike = Union[str, "os.PathLike[str]", np.ndarray]

MAX_PIXELS = 100_000_000
"""Largest image accepted, in pixels (h × w; 100 MP, e.g. 10000 × 10000). Bigger images raise
:class:`BadImageError` before anything is decoded or copied: files from their header (read by Pillow),
arrays from their shape. A 20000 × 20000 image would need 1.2 GB for the BGR array alone and up to
N × 400 MB for full-size masks. Pass ``max_pixels`` to raise the limit (files over 100 MP also need
``OPENCV_IO_MAX_IMAGE_PIXELS``, see the module docstring). Measured at the limit (a 10000 × 10000 photo,
demo model, 13 instances): peak RSS 592 MB, of which 286 MB is the image itself and ~300 MB the process
and model; ``Result.masks`` would add N × 100 MB (use ``mask(i)``)."""

MAX_FILE_BYTES = 1 << 30
"""Smallest file-size limit, in bytes (1 GiB): 100 MP at up to 10 bytes per pixel (e.g. an uncompressed
16-bit RGBA TIFF is 8). See :func:`file_limit`; files over the limit are refused from ``stat``."""

_CV2_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
_CV2_DEFAULT = 1 << 30  # OpenCV's default limit


def _cv2_limit_before_import() -> tuple[int | None, bool]:
    """(OpenCV's pixel limit as far as known, whether this module sets the variable for the import)."""
    value = os.environ.get(_CV2_ENV)
    if value is not None:
        return (int(value) if value.strip().isdigit() else None), False
    if "cv2" in sys.modules:
        return _CV2_DEFAULT, False
    return MAX_PIXELS, True


OPENCV_MAX_PIXELS, _SET_CV2_ENV = _cv2_limit_before_import()
"""OpenCV's own decode limit in pixels (``OPENCV_IO_MAX_IMAGE_PIXELS``), None when it cannot be known."""
if _SET_CV2_ENV:
    os.environ[_CV2_ENV] = str(MAX_PIXELS)
try:
    import cv2  # noqa: E402  (after the variable is set: OpenCV reads it on import)
finally:
    if _SET_CV2_ENV:
        os.environ.pop(_CV2_ENV, None)


def file_limit(max_pixels: int | None) -> int | None:
    """File-size limit in bytes for ``max_pixels``: max(:data:`MAX_FILE_BYTES`, 10 × ``max_pixels``);
    None (no limit) when ``max_pixels`` is None."""
    return None if max_pixels is None else max(MAX_FILE_BYTES, 10 * int(max_pixels))


def check_size(shape: tuple[int, ...], max_pixels: int | None, what: str = "image") -> None:
    """Raise :class:`BadImageError` when an (h, w, ...) ``shape`` has more than ``max_pixels`` pixels."""
    if max_pixels is not None and len(shape) >= 2 and int(shape[0]) * int(shape[1]) > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {shape[1]} x {shape[0]} = {int(shape[0]) * int(shape[1]):,} pixels, over the limit of "
            f"{max_pixels:,}: downscale it, or pass a larger max_pixels (memory grows with the pixel count)"
        )


# Pillow plugins for the formats OpenCV decodes (others are left to OpenCV, under its own limit).
_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "SUN", "JPEG2000", "AVIF")
_PIL_LOCK = threading.Lock()  # catch_warnings is not thread-safe: one header read at a time (~0.1 ms)


class _PillowBomb(Exception):
    """A Pillow plugin raised its own DecompressionBombError; ``pixels`` as it reported them (0 if unknown)."""

    def __init__(self, pixels: int) -> None:
        super().__init__(pixels)
        self.pixels = pixels


def _pillow_size(fp: IO[bytes]) -> tuple[int, int] | None:
    """(w, h) of an image file from its header, read by Pillow without decoding; None when no plugin of
    :data:`_FORMATS` identifies it. Like ``PIL.Image.open`` but without its bomb check, so nothing warns."""
    from PIL import Image  # lazy: keeps ``import fastsam_onnx`` light

    prefix = fp.read(32)
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        # Pillow's WebP plugin allocates the canvas when it opens a file: take the size from its header helper.
        try:
            from PIL.WebPImagePlugin import _get_size
        except ImportError:
            _get_size = None
        size = _get_size(prefix[:30]) if _get_size is not None else None
        if size:
            return (int(size[0]), int(size[1])) if min(size) > 0 else None
    Image.preinit()
    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for fmt in _FORMATS:
            if fmt not in Image.OPEN:
                Image.init()
            factory, accept = Image.OPEN.get(fmt, (None, None))
            if factory is None:
                continue
            try:
                ok = accept(prefix) if accept is not None else True
            except Exception:  # noqa: BLE001 - some accept() functions fail on short prefixes: not this format
                continue
            if not ok or isinstance(ok, str):  # a str: the format is known but not supported by this build
                continue
            fp.seek(0)
            try:
                w, h = factory(fp, "").size
            except Image.DecompressionBombError as e:
                m = re.search(r"\((\d+) pixels\)", str(e))
                raise _PillowBomb(int(m.group(1)) if m else 0) from None
            except Exception:  # noqa: BLE001 - hostile bytes can make a plugin fail in any way: not this format
                continue
            return (int(w), int(h)) if w > 0 and h > 0 else None
    return None


_HDR_RES = re.compile(rb"^([-+])([XY]) +(\d+) +([-+])([XY]) +(\d+)\s*$")


def _own_size(fp: IO[bytes]) -> tuple[int, int] | None:
    """(w, h) from the header of a Radiance HDR, PAM or PFM file (formats OpenCV decodes, Pillow cannot size), or
    None; reads at most 64 KiB."""
    fp.seek(0)
    head = fp.read(64 << 10)
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        lines = head.split(b"\n")
        for i, line in enumerate(lines[:-1]):
            if not line.strip() and i + 1 < len(lines):  # the blank line ends the header; the resolution follows
                m = _HDR_RES.match(lines[i + 1].strip())
                if m is None or m.group(2) == m.group(5):
                    return None
                a, b = int(m.group(3)), int(m.group(6))
                return (b, a) if m.group(2) == b"Y" else (a, b)
        return None
    if head[:2] in (b"PF", b"Pf") and head[2:3].isspace():  # PFM: "PF" w h scale, whitespace-separated
        words = head[2:64].split()
        if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
            return int(words[0]), int(words[1])
        return None
    if head.startswith(b"P7") and head[2:3] in (b"\n", b"\r", b" "):
        fields: dict[bytes, int] = {}
        for line in head.split(b"\n")[1:]:
            words = line.split(b"#", 1)[0].split()
            if words[:1] == [b"ENDHDR"]:
                break
            if len(words) == 2 and words[0] in (b"WIDTH", b"HEIGHT") and words[1].isdigit():
                fields[words[0]] = int(words[1])
        if len(fields) == 2:
            return fields[b"WIDTH"], fields[b"HEIGHT"]
    return None


def header_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """(h, w) from the header of encoded image bytes (uint8 array or bytes) as Pillow reads it, without
    decoding; None when Pillow does not identify the format. A size Pillow itself calls a decompression bomb
    raises :class:`BadImageError`."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    try:
        wh = _pillow_size(io.BytesIO(raw)) or _own_size(io.BytesIO(raw))
    except _PillowBomb as e:
        raise ImageTooLargeError(f"image header claims {e.pixels:,} pixels (a decompression bomb)") from None
    return None if wh is None else (wh[1], wh[0])


def _open_regular(p: Path, max_bytes: int | None) -> tuple[int, int]:
    """Open ``p`` read-only and return (fd, size in bytes) after the checks of steps 1-2 (module docstring)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise BadImageError(f"image file not found: {p}") from None
    except (OSError, ValueError) as e:
        raise BadImageError(f"cannot read image file {p}: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadImageError(f"{p} is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise BadImageError(f"{p} is not a regular file (a FIFO, device or socket): pass an image file")
    check_bytes(p, st.st_size, max_bytes)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise BadImageError(f"cannot read image file {p}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
        os.close(fd)
        raise BadImageError(f"{p} is not a regular file (a FIFO, device or socket): pass an image file")
    check_bytes(p, st.st_size, max_bytes)
    return fd, st.st_size


def check_bytes(p: "Path | str", n: int, max_bytes: int | None) -> None:
    """Refuse an empty image file (BadImageError) or one over ``max_bytes`` bytes (ImageTooLargeError)."""
    if n == 0:
        raise BadImageError(f"image file is empty: {p}")
    if max_bytes is not None and n > max_bytes:
        raise ImageTooLargeError(
            f"image file {p} is {n:,} bytes, over the file-size limit of {max_bytes:,} bytes "
            "(1 GiB, or 10 bytes per max_pixels): pass a larger max_pixels or max_file_bytes"
        )


def _cv2_limit_text() -> str:
    return f"{OPENCV_MAX_PIXELS:,} pixels" if OPENCV_MAX_PIXELS is not None else f"{_CV2_ENV} pixels"


def _decode(data: np.ndarray, p: "Path | str") -> np.ndarray:
    """``cv2.imdecode(data, IMREAD_COLOR)``; every failure (None, cv2.error, MemoryError) → BadImageError."""
    try:
        im = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:
        text = str(e)
        if "CV_IO_MAX_IMAGE_PIXELS" in text or "validateInputImageSize" in text:
            raise BadImageError(
                f"cannot decode {p}: the image is over OpenCV's own limit of {_cv2_limit_text()}; set the environment "
                f"variable {_CV2_ENV} before importing fastsam_onnx or cv2 to raise it"
            ) from None
        last = text.strip().splitlines()[-1] if text.strip() else type(e).__name__
        raise BadImageError(f"cannot decode image (not an image or truncated): {p} (OpenCV: {last})") from None
    except MemoryError:
        raise BadImageError(f"cannot decode {p}: not enough memory") from None
    if im is None:
        raise BadImageError(f"cannot decode image (not an image or truncated): {p}")
    return im


def read_image(
    path: str | os.PathLike[str],
    max_pixels: int | None = MAX_PIXELS,
    max_file_bytes: int | None | Literal["auto"] = "auto",
) -> np.ndarray:
    """Read an image file as OpenCV does for the reference: (H, W, 3) BGR uint8.

    Raises :class:`BadImageError` for a missing, empty, non-regular or undecodable file, a file over
    ``max_file_bytes`` ("auto": :func:`file_limit` of ``max_pixels``; None: no limit) and an image over
    ``max_pixels`` pixels (refused from its header before decoding; formats Pillow does not read are
    decoded under OpenCV's own limit and checked after). See the module docstring for the order of checks.
    """
    p = Path(path)
    max_bytes = file_limit(max_pixels) if isinstance(max_file_bytes, str) else max_file_bytes
    fd, _ = _open_regular(p, max_bytes)
    with os.fdopen(fd, "rb") as f:
        _check_header(f, str(p), max_pixels)
        f.seek(0)
        buf = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if not buf:
        raise BadImageError(f"image file is empty: {p}")
    check_bytes(p, len(buf), max_bytes)  # the file grew after stat
    return to_bgr(_decode(np.frombuffer(buf, np.uint8), p), max_pixels)


def decode_image_bytes(
    data: bytes,
    name: str = "image",
    max_pixels: int | None = MAX_PIXELS,
    max_file_bytes: int | None | Literal["auto"] = "auto",
) -> np.ndarray:
    """Encoded image bytes (an upload, an object store's file) → (H, W, 3) BGR uint8, with the checks of
    :func:`read_image` in the same order: size in bytes, pixel count from the header (Pillow, no decoding),
    then ``cv2.imdecode``. ``name`` appears in the messages. Too many pixels or bytes raise
    :class:`ImageTooLargeError`; empty or undecodable bytes :class:`BadImageError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadImageError(f"expected encoded image bytes, got {type(data).__name__}")
    if not data:
        raise BadImageError(f"image is empty (0 bytes): {name}")
    check_bytes(name, len(data), file_limit(max_pixels) if isinstance(max_file_bytes, str) else max_file_bytes)
    _check_header(io.BytesIO(data), name, max_pixels)
    return to_bgr(_decode(np.frombuffer(data, np.uint8), name), max_pixels)


def _check_header(f: IO[bytes], name: str, max_pixels: int | None) -> None:
    """Refuse an image over ``max_pixels`` from its header (Pillow, or :func:`_own_size`; nothing decoded), and
    a file whose size no header reader can tell (it would be decoded before its size is known)."""
    if max_pixels is None:
        return
    try:
        wh = _pillow_size(f)
    except _PillowBomb as e:
        if e.pixels == 0 or e.pixels > max_pixels:
            raise ImageTooLargeError(
                f"{name} is {e.pixels:,} pixels (from its header), over the limit of {max_pixels:,}: "
                "downscale it, or pass a larger max_pixels"
            ) from None
        wh = None
    if wh is None:
        wh = _own_size(f)
    if wh is not None:
        check_size((wh[1], wh[0]), max_pixels, name)
    else:
        raise BadImageError(
            f"cannot decode image: {name} is not an image, is truncated, or is in a format whose size cannot be "
            "read from its header (JPEG, PNG, BMP, TIFF, GIF, WebP, PNM/PAM/PFM, Sun raster, JPEG 2000, AVIF and "
            "Radiance HDR can); it was not decoded (pass max_pixels=None to let OpenCV try)"
        )


def to_bgr(im: np.ndarray, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Convert an array as OpenCV reads it to a contiguous (H, W, 3) BGR uint8 image.

    Accepts (H, W), (H, W, 1), (H, W, 2) gray + alpha, (H, W, 3) BGR and (H, W, 4) BGRA, in uint8 or
    uint16 (scaled to 8 bits by keeping the high byte, as the reference does). Anything else raises
    :class:`BadImageError`, as does an image of more than ``max_pixels`` pixels (checked before any copy).
    Read-only and non-contiguous arrays are accepted and never written to.
    """
    if not isinstance(im, np.ndarray):
        raise BadImageError(f"expected a path or a numpy array, got {type(im).__name__}")
    if im.ndim in (2, 3):
        check_size(im.shape, max_pixels)
    if im.dtype == np.uint16:
        im = (im >> 8).astype(np.uint8)
    if im.dtype != np.uint8:
        raise BadImageError(
            f"expected a uint8 or uint16 image array, got dtype {im.dtype}; "
            "convert float images with (img * 255).clip(0, 255).astype(np.uint8)"
        )
    if im.ndim == 2:
        im = im[..., None]
    if im.ndim != 3 or not all(im.shape):
        raise BadImageError(f"expected a single (H, W, C) image, got an array of shape {im.shape}")
    c = im.shape[2]
    if c == 2:
        im, c = im[..., :1], 1
    if c == 1:
        return cv2.cvtColor(np.ascontiguousarray(im[..., 0]), cv2.COLOR_GRAY2BGR)
    if c == 3:
        return np.ascontiguousarray(im)
    if c == 4:
        return cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_BGRA2BGR)
    raise BadImageError(f"expected 1, 2, 3 or 4 channels, got {c}")


def load_image(image: ImageLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """A path or an array → (H, W, 3) BGR uint8 (see :func:`read_image` and :func:`to_bgr`)."""
    if isinstance(image, np.ndarray):
        return to_bgr(image, max_pixels)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels)
    raise BadImageError(f"expected a path or a numpy array, got {type(image).__name__}")


IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm"}
"""File extensions (lower case) of the images a folder run picks up (CLI folder mode, distributed sources)."""


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
