"""Uploaded image bytes → the (H, W, 3) BGR uint8 image, with the same header checks as files.

:func:`decode_image_bytes` is :func:`fastsam_onnx.image.read_image` for bytes that arrived over HTTP: the
pixel count is read from the header (Pillow, no decode) and an image over ``max_pixels`` is refused before
``cv2.imdecode`` runs; formats Pillow does not identify are decoded only under OpenCV's own limit. Too many
pixels raise :class:`~fastsam_onnx.errors.ImageTooLargeError` (HTTP 413); anything undecodable a plain
:class:`~fastsam_onnx.errors.BadImageError` (HTTP 400). :func:`decode_base64` takes base64 or a ``data:`` URI.
"""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np

from .. import image
from ..errors import BadImageError, ImageTooLargeError
from ..image import MAX_PIXELS

__all__ = ["ImageTooLargeError", "decode_image_bytes", "decode_base64"]

_DATA_URI = re.compile(r"^data:[\w.+/-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


def decode_image_bytes(data: bytes, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, BMP, TIFF, WebP, ...) → (H, W, 3) BGR uint8, refused before decoding when
    the header says more than ``max_pixels`` (:class:`ImageTooLargeError`, 413); :class:`BadImageError` (400) for
    empty or undecodable bytes. The runtime's own :func:`fastsam_onnx.image.decode_image_bytes`."""
    return image.decode_image_bytes(data, "the uploaded image", max_pixels)


def decode_base64(text: str) -> bytes:
    """Base64 (standard or URL-safe alphabet, padding optional) or a ``data:...;base64,`` URI → bytes."""
    if not isinstance(text, str) or not text:
        raise BadImageError("image must be a non-empty base64 string or a data: URI")
    m = _DATA_URI.match(text)
    body = text[m.end():] if m else text
    if not m and text[:5].lower() == "data:":
        raise BadImageError("a data: URI image must be base64-encoded (data:image/png;base64,...)")
    body = re.sub(r"\s+", "", body)
    body += "=" * (-len(body) % 4)
    try:
        return base64.b64decode(body.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise BadImageError("image is not valid base64") from None
