"""Letterbox: resize keeping the aspect ratio, pad to the network input, BGR uint8 → RGB float NCHW.

Reproduces ultralytics ``LetterBox`` (centre padding, value 114, ``cv2.INTER_LINEAR``, upscaling allowed). The
resize is ``resize``: "linear" (default) gives x86 OpenCV's ``INTER_LINEAR`` values on every CPU
(:func:`fastsam_onnx.resize.resize_linear`), "opencv" this machine's ``cv2.INTER_LINEAR`` (the same on x86; faster on
arm64, where OpenCV's kernels give slightly different values). See docs/arm64.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .resize import resize_linear


#: the letterbox's resize choices (see the module's docstring)
RESIZES = ("linear", "opencv")
DEFAULT_RESIZE = "linear"


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox: original (h0, w0), network input (H, W), resized content and padding.

    ``new_w``/``new_h`` is the resized content size and ``left``/``top`` its offset inside the input, pixels.
    """

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    new_w: int
    new_h: int
    left: int
    top: int


def letterbox_geometry(
    orig_shape: tuple[int, int], new_shape: tuple[int, int], *, auto: bool = False, stride: int = 32
) -> Letterbox:
    """Compute the letterbox for an (h0, w0) image into (H, W).

    ``auto`` gives the minimal rectangle (padding mod ``stride``), as the reference does for dynamic graphs.
    Pads: top = round(dh - 0.1), bottom = round(dh + 0.1) with Python's half-to-even ``round``.
    """
    h0, w0 = orig_shape
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = new_shape[1] - new_w, new_shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return Letterbox((h0, w0), (new_h + top + bottom, new_w + left + right), new_w, new_h, left, top)


def letterbox(image: np.ndarray, lb: Letterbox, pad_value: int = 114, resize: str = DEFAULT_RESIZE) -> np.ndarray:
    """Resize (H0, W0, 3) BGR uint8 into the letterbox (``resize``: one of :data:`RESIZES`) and pad it:
    returns (H, W, 3) BGR uint8."""
    if image.shape[:2] != (lb.new_h, lb.new_w):
        if resize == "linear":
            image = resize_linear(image, lb.new_w, lb.new_h)
        else:
            image = cv2.resize(image, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    bottom, right = lb.input_shape[0] - lb.top - lb.new_h, lb.input_shape[1] - lb.left - lb.new_w
    if lb.top == bottom == lb.left == right == 0:
        return image  # nothing to pad (callers only read it)
    return cv2.copyMakeBorder(image, lb.top, bottom, lb.left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)


def to_tensor(image: np.ndarray, dtype: np.dtype = np.float32) -> np.ndarray:
    """(H, W, 3) BGR uint8 → (1, 3, H, W) RGB in [0, 1] of ``dtype`` (float32 or float16)."""
    out = np.empty((1, 3, *image.shape[:2]), dtype=np.float32)
    for c, plane in enumerate(cv2.split(image)):  # contiguous B, G, R planes: no strided reads
        np.divide(plane, np.float32(255), out=out[0, 2 - c])
    return out if dtype == np.float32 else out.astype(dtype)
