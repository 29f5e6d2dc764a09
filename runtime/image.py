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


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as OpenCV does for the reference: (H, W, 3) BGR uint8.

    Raises :class:`BadImageError` for a missing, empty or undecodable file.
    """
    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"image file not found: {p}")
    data = np.fromfile(str(p), np.uint8)
    if data.size == 0:
        raise BadImageError(f"image file is empty: {p}")
    im = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if im is None:
        raise BadImageError(f"cannot decode image (not an image or truncated): {p}")
    return to_bgr(im)


def to_bgr(im: np.ndarray) -> np.ndarray:
    """Convert an array as OpenCV reads it to a contiguous (H, W, 3) BGR uint8 image.

    Accepts (H, W), (H, W, 1), (H, W, 2) gray + alpha, (H, W, 3) BGR and (H, W, 4) BGRA, in uint8 or
    uint16 (scaled to 8 bits by keeping the high byte, as the reference does). Anything else raises
    :class:`BadImageError`.
    """
    if not isinstance(im, np.ndarray):
        raise BadImageError(f"expected a path or a numpy array, got {type(im).__name__}")
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


def load_image(image: ImageLike) -> np.ndarray:
    """A path or an array → (H, W, 3) BGR uint8 (see :func:`read_image` and :func:`to_bgr`)."""
    if isinstance(image, np.ndarray):
        return to_bgr(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    raise BadImageError(f"expected a path or a numpy array, got {type(image).__name__}")
