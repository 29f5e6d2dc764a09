"""Image loading: paths and arrays to the (H, W, 3) BGR uint8 image the pipeline works on.

Conversions follow the reference (ultralytics ``LoadPilAndNumpy`` / ``imread``): 16-bit → high byte,
grayscale → 3 channels, BGRA → BGR, gray + alpha → gray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import BadImageError

ImageLike = Union[str, "os.PathLike[str]", np.ndarray]

MAX_PIXELS = 100_000_000
"""Largest image accepted, in pixels (h × w; 100 MP, e.g. 10000 × 10000). Bigger images raise
:class:`BadImageError` before anything is decoded or copied: a 20000 × 20000 image would need 1.2 GB for
the BGR array alone and up to N × 400 MB for full-size masks. Pass ``max_pixels`` to raise the limit.
Measured at the limit (a 10000 × 10000 photo, demo model, 13 instances): peak RSS 592 MB, of which 286 MB
is the image itself and ~300 MB the process and model; ``Result.masks`` would add N × 100 MB (use ``mask(i)``)."""


def check_size(shape: tuple[int, ...], max_pixels: int | None, what: str = "image") -> None:
    """Raise :class:`BadImageError` when an (h, w, ...) ``shape`` has more than ``max_pixels`` pixels."""
    if max_pixels is not None and len(shape) >= 2 and int(shape[0]) * int(shape[1]) > max_pixels:
        raise BadImageError(
            f"{what} is {shape[1]} x {shape[0]} = {int(shape[0]) * int(shape[1]):,} pixels, over the limit of "
            f"{max_pixels:,}: downscale it, or pass a larger max_pixels (memory grows with the pixel count)"
        )


def header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(h, w) from the header of PNG or JPEG bytes (uint8 array), None for other or broken headers."""
    b = data[:65536].tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24 and b[12:16] == b"IHDR":
        return int.from_bytes(b[20:24], "big"), int.from_bytes(b[16:20], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b) and b[i] == 0xFF:
            marker, length = b[i + 1], int.from_bytes(b[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(b[i + 5 : i + 7], "big"), int.from_bytes(b[i + 7 : i + 9], "big")
            i += 2 + length
    return None


def read_image(path: str | os.PathLike[str], max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as OpenCV does for the reference: (H, W, 3) BGR uint8.

    Raises :class:`BadImageError` for a missing, empty or undecodable file, or one over ``max_pixels``
    (PNG and JPEG are refused from their header, before decoding; other formats after).
    """
    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"image file not found: {p}")
    data = np.fromfile(str(p), np.uint8)
    if data.size == 0:
        raise BadImageError(f"image file is empty: {p}")
    hw = header_size(data)
    if hw is not None:
        check_size(hw, max_pixels, str(p))
    im = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if im is None:
        raise BadImageError(f"cannot decode image (not an image or truncated): {p}")
    return to_bgr(im, max_pixels)


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
