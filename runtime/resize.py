"""The letterbox's bilinear resize with the same values on every CPU: OpenCV's x86 ``cv2.INTER_LINEAR``.

The reference (ultralytics) resizes with ``cv2.INTER_LINEAR``. On x86 OpenCV computes it in 11-bit fixed point;
the aarch64 wheels compute it with other kernels (KleidiCV), about a fifth of the values one level apart, which
moves boxes by pixels and can change instance counts (docs/arm64.md has the measurement). :func:`resize_linear`
computes x86's integer arithmetic in numpy, so its output equals x86's ``cv2.resize(..., INTER_LINEAR)`` bit for
bit on any CPU (tests/test_resize.py checks it against OpenCV on x86, downscaling and upscaling).
"""

from __future__ import annotations

import platform

import cv2
import numpy as np

#: OpenCV's INTER_LINEAR on this machine is the x86 one: no need for the numpy replica
NATIVE_IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _taps(dst: int, src: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One axis: source indices (i0, i1) and 11-bit weights (w0, w1) of each of ``dst`` output positions.

    As OpenCV: ``f = (float)((d + 0.5) * scale - 0.5)`` with ``scale = 1 / (dst / src)``, weights
    ``round((1 - frac) * 2048)`` and ``round(frac * 2048)``; ``clamp`` (the x axis) zeroes the fraction outside the
    image, the y axis only clips its row indices."""
    f = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.intp)
    f -= i
    if clamp:
        f[(i < 0) | (i >= src - 1)] = 0
        i = np.clip(i, 0, src - 1)
    w1 = np.rint(f * np.float32(2048)).astype(np.int32)
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int32)
    return np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1


def resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) or (H, W) uint8 → (height, width[, C]) uint8 equal to x86 OpenCV's ``INTER_LINEAR`` resize."""
    if NATIVE_IS_X86:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return _replica(image, width, height)


def _replica(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The numpy computation (any CPU): horizontal pass in int32, ``>> 4``, then the vertical pass as OpenCV's
    SIMD kernel does it: ``((a * b0) >> 16) + ((c * b1) >> 16) + 2 >> 2``. An exact 2x reduction is OpenCV's
    area average ``(a + b + c + d + 2) >> 2``."""
    img = image if image.ndim == 3 else image[:, :, None]
    h0, w0 = img.shape[:2]
    if w0 == 2 * width and h0 == 2 * height:
        x = img.astype(np.uint16)
        out = (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2] + 2) >> 2
        return out.astype(np.uint8).reshape((height, width, *image.shape[2:]))
    x0, x1, wx0, wx1 = _taps(width, w0, clamp=True)
    y0, y1, wy0, wy1 = _taps(height, h0, clamp=False)
    rows = np.unique(np.concatenate([y0, y1]))  # only the source rows the output reads
    src = img[rows] if len(rows) < h0 else img
    horiz = np.take(src, x0, axis=1).astype(np.int32)
    horiz *= wx0[:, None]
    right = np.take(src, x1, axis=1).astype(np.int32)
    right *= wx1[:, None]
    horiz += right
    horiz >>= 4
    out = horiz[np.searchsorted(rows, y0)]
    out *= wy0[:, None, None]
    out >>= 16
    below = horiz[np.searchsorted(rows, y1)]
    below *= wy1[:, None, None]
    below >>= 16
    out += below
    out += 2
    out >>= 2
    return out.astype(np.uint8).reshape((height, width, *image.shape[2:]))
