"""Edge maps from the instances' mask probabilities: the zero-shot edge detection of the SAM paper, which
FastSAM follows (SAM, appendix D.2: Sobel filtering of the unthresholded mask probability maps, values kept
only on the masks' boundaries, pixel-wise maximum over the masks, linear normalisation, edge NMS).

The choices the papers leave open, as made here:

- **Probability map**: ``sigmoid(logit)`` with the logits upsampled exactly as the masks are
  (:func:`fastsam_onnx.masks.crop_masks`: the same axes, the same box crop), *before* the threshold;
  zero outside the instance's box crop. Letterboxed (``retina_masks=False``) results bring the
  probability to the original size with the same bilinear axes as :meth:`Result.original_crops`.
- **Gradient**: 3 × 3 Sobel (``cv2.Sobel``, replicated image border, so the image frame is no edge),
  magnitude ``sqrt(gx² + gy²)``; the crop is padded with zeros inside the image, so a mask cut by its
  box has an edge at the box side, as the cut mask has.
- **Band**: the instance's own boundary pixels are those where its binary mask (logit > 0) differs from
  a 4-neighbour, on both sides of the transition (outline and holes alike: a hole is outside the
  instance; the image frame is not a boundary). The gradient is kept within ``band`` pixels
  (Chebyshev distance) of them — default 1, a strip 4 px wide — and zeroed elsewhere, so soft
  gradients inside or outside an instance that never cross 0.5 give no edge.
- **Maximum** over instances, pixel-wise, on one (H, W) float32 canvas; the winning instance's gradient
  direction is kept (one uint8 canvas) for the thinning.
- **Thinning**: Canny's non-maximum suppression along that gradient direction, quantised to 4 directions
  (0°, 45°, 90°, 135°): a pixel survives when it is > its neighbour on one side and >= on the other (a
  2-px plateau keeps one pixel, a 1-px line stays as it is). Only non-zero pixels are visited.
- **Normalisation**: linear, divided by the map's maximum after thinning, so the strongest edge of the
  image is 1 (the SAM paper's "linearly normalize to [0, 1]"; per image, independent of the image size).

Work and memory per instance scale with its box (plus ``band + 2`` px); the whole map is one float32
and one uint8 canvas of the output size, never an N × H × W stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import BadArgumentError
from .masks import Axis, input_axes, protos_hwc, rescale_crop, retina_axes, span_logits, unpad_axes

if TYPE_CHECKING:
    from .result import Result

__all__ = ["BAND", "EdgeCanvas", "thin_edges", "result_edges", "edge_directions"]

#: default half-width of the kept strip around each instance's boundary, pixels
BAND = 1
#: a strip covering more than 1/DENSE_FRACTION of its extent is filtered whole (cv2) instead of per pixel
DENSE_FRACTION = 6
#: neighbour offsets (dy, dx) per direction code: 0 none, 1 horizontal gradient, 2 diagonal (1, 1),
#: 3 vertical gradient, 4 anti-diagonal (1, -1)
_DY = np.array([0, 0, 1, 1, 1], dtype=np.int64)
_DX = np.array([0, 1, 1, 0, -1], dtype=np.int64)
_T1, _T2 = np.float32(np.tan(np.pi / 8)), np.float32(np.tan(3 * np.pi / 8))


def check_band(band) -> int:
    """``band`` as an int in [0, 64] pixels; anything else raises :class:`BadArgumentError`."""
    if isinstance(band, (bool, np.bool_)) or not isinstance(band, (int, np.integer)) or not 0 <= int(band) <= 64:
        raise BadArgumentError(f"band must be an int number of pixels in [0, 64], got {band!r}")
    return int(band)


def edge_directions(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Gradient (gx, gy) (x right, y down) → uint8 direction codes 1-4 (see ``_DY``/``_DX``), same shape."""
    ax, ay = np.abs(gx), np.abs(gy)
    code = np.where(gx * gy > 0, 2, 4).astype(np.uint8)
    code[ay <= _T1 * ax] = 1
    code[ay > _T2 * ax] = 3
    return code


class EdgeCanvas:
    """Pixel-wise maximum of per-instance boundary gradients on one (H, W) canvas; :meth:`finish` thins
    and normalises. ``add`` takes one instance at a time; its work is one pass over the instance's box
    (the band search) plus work per band pixel, its memory the box's size."""

    def __init__(self, shape: tuple[int, int], band: int = BAND):
        self.shape = (int(shape[0]), int(shape[1]))
        self.band = check_band(band)
        H, W = self.shape
        self._mag = np.zeros((H + 2, W + 2), dtype=np.float32)  # a zero frame: neighbours need no bounds checks
        self._dir = np.zeros((H + 2, W + 2), dtype=np.uint8)
        r = self.band + 1  # transition pixels (a cross) dilated by the band: one gradient with this kernel
        k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        k[0, 0] = k[0, -1] = k[-1, 0] = k[-1, -1] = 0
        self._kernel = k
        self.seconds = 0.0

    def add_logits(self, x0: int, y0: int, logits: np.ndarray) -> None:
        """One instance from its (h, w) float32 mask logits at column ``x0``, row ``y0`` of this canvas
        (probability = sigmoid(logits), mask = logits > 0)."""
        self._add(x0, y0, np.asarray(logits, np.float32), logits > 0, logits=True)

    def add(self, x0: int, y0: int, prob: np.ndarray, mask: np.ndarray) -> None:
        """One instance: (h, w) probability in [0, 1] and its (h, w) binary mask, at column ``x0``, row ``y0``."""
        self._add(x0, y0, np.asarray(prob, np.float32), np.asarray(mask, bool), logits=False)

    def _add(self, x0: int, y0: int, values: np.ndarray, mask: np.ndarray, logits: bool) -> None:
        H, W = self.shape
        h, w = values.shape
        if h == 0 or w == 0 or x0 >= W or y0 >= H or x0 + w <= 0 or y0 + h <= 0:
            return
        m = self.band + 1  # how far the strip reaches outside the crop
        Y0, X0, Y1, X1 = max(y0 - m, 0), max(x0 - m, 0), min(y0 + h + m, H), min(x0 + w + m, W)
        cy0, cx0 = max(Y0 - y0, 0), max(X0 - x0, 0)
        cy1, cx1 = min(Y1 - y0, h), min(X1 - x0, w)
        pads = (y0 + cy0 - Y0, Y1 - (y0 + cy1), x0 + cx0 - X0, X1 - (x0 + cx1))
        # the mask on the strip's extent (zero outside the crop), and its band: one morphological gradient
        b = cv2.copyMakeBorder(np.ascontiguousarray(mask[cy0:cy1, cx0:cx1]).view(np.uint8), *pads, cv2.BORDER_CONSTANT, value=0)
        band = cv2.morphologyEx(b, cv2.MORPH_GRADIENT, self._kernel, borderType=cv2.BORDER_REPLICATE)
        n = cv2.countNonZero(band)
        if n == 0:
            return
        # values on the extent plus a 1-px frame: zero probability outside the crop, the canvas border replicated
        zero = -1e4 if logits else 0.0
        v = cv2.copyMakeBorder(np.ascontiguousarray(values[cy0:cy1, cx0:cx1]), *pads, cv2.BORDER_CONSTANT, value=zero)
        v = cv2.copyMakeBorder(v, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        sub = self._mag[Y0 + 1 : Y1 + 1, X0 + 1 : X1 + 1]  # (the canvases have a 1-px frame too)
        if n * DENSE_FRACTION > band.size:  # a ragged mask: whole-extent filters beat per-pixel gathers
            if logits:
                v = _sigmoid(v)
            gx = cv2.Sobel(v, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
            gy = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
            mag = cv2.magnitude(gx, gy)
            up = (mag > sub) & (band != 0)
            np.copyto(sub, mag, where=up)
            self._dir[Y0 + 1 : Y1 + 1, X0 + 1 : X1 + 1][up] = edge_directions(gx[up], gy[up])
            return
        pts = cv2.findNonZero(band).reshape(-1, 2).astype(np.int64)  # (n, 2) x, y on the extent
        W2 = v.shape[1]
        at = (pts[:, 1] + 1) * W2 + (pts[:, 0] + 1)
        t = v.ravel()[at[None, :] + (_OY * W2 + _OX)[:, None]]  # (9, n): each band pixel's 3 x 3 taps
        if logits:
            t = _sigmoid(t)
        gx = (t[2] + 2 * t[5] + t[8]) - (t[0] + 2 * t[3] + t[6])
        gy = (t[6] + 2 * t[7] + t[8]) - (t[0] + 2 * t[1] + t[2])
        mag = np.sqrt(gx * gx + gy * gy)
        flat = (pts[:, 1] + Y0 + 1) * (W + 2) + (pts[:, 0] + X0 + 1)
        up = mag > self._mag.ravel()[flat]
        flat = flat[up]
        self._mag.ravel()[flat] = mag[up]
        self._dir.ravel()[flat] = edge_directions(gx[up], gy[up])

    def finish(self) -> np.ndarray:
        """The (H, W) float32 edge map in [0, 1]: thinned (:func:`thin_edges`), divided by its maximum."""
        out = _nms_framed(self._mag, self._dir)[1:-1, 1:-1].copy()
        top = float(out.max()) if out.size else 0.0
        if top > 0:
            out /= np.float32(top)
        return out


#: the 3 x 3 neighbourhood in row-major order (dy, dx), Sobel's taps
_OY = np.repeat(np.arange(-1, 2), 3)
_OX = np.tile(np.arange(-1, 2), 3)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), float32 (exp overflows to inf for x < -88: probability 0)."""
    with np.errstate(over="ignore"):
        out = np.exp(-x)
    out += 1
    return np.reciprocal(out, out=out)


def thin_edges(edges: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Non-maximum suppression along the gradient: (H, W) float32 map and (H, W) uint8 direction codes
    (:func:`edge_directions`) → a new (H, W) float32 map where only local maxima across the edge remain.

    A non-zero pixel survives when it is > its neighbour at +(dy, dx) and >= the one at -(dy, dx)
    (outside the image counts as 0); code 0 means no direction (kept). Only non-zero pixels are visited.
    """
    edges = np.asarray(edges, dtype=np.float32)
    framed = np.pad(edges, 1)
    return _nms_framed(framed, np.pad(np.asarray(direction, np.uint8), 1))[1:-1, 1:-1].copy()


def _nms_framed(mag: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """:func:`thin_edges` on maps with a zero frame of 1 px (so every neighbour index is valid)."""
    W2 = mag.shape[1]
    flat = mag.ravel()
    idx = np.flatnonzero(flat)
    v = flat[idx]
    d = direction.ravel()[idx]
    off = (_DY * W2 + _DX)[d]
    keep = ((v > flat[idx + off]) & (v >= flat[idx - off])) | (d == 0)
    out = np.zeros_like(mag)
    out.ravel()[idx[keep]] = v[keep]
    return out


def _logit_axes(result: "Result") -> tuple[Axis, Axis]:
    protos, _, retina = result._logits
    if retina:
        return retina_axes(protos.shape[1:], result.orig_shape)
    return input_axes(protos.shape[1:], result.mask_shape)


def result_edges(result: "Result", band: int = BAND) -> np.ndarray:
    """The edge map of ``result``'s instances: (h0, w0) float32 in [0, 1] at the original image size.

    From the mask logits the result keeps (results of :meth:`FastSAM.segment` and their selections);
    a result without them (built by hand, a merged point prompt) uses its binary masks as the
    probability maps (0/1), which gives the same boundaries without the soft gradient.
    """
    canvas = EdgeCanvas(result.orig_shape, band)
    if getattr(result, "_logits", None) is None:
        for x0, y0, m in result.original_crops():
            canvas.add(x0, y0, m.astype(np.float32), m)
        return canvas.finish()
    protos, coeffs, retina = result._logits
    ay, ax = _logit_axes(result)
    hwc = protos_hwc(protos)
    add = canvas.add_logits if retina else LetterboxedSink(canvas, result.mask_shape)
    for coef, (x0, y0, m) in zip(np.asarray(coeffs, np.float32), result.crops):
        h, w = m.shape
        if h and w:
            add(x0, y0, span_logits(hwc, coef, y0, y0 + h, x0, x0 + w, ay, ax))
    return canvas.finish()


class LetterboxedSink:
    """Logits on the letterboxed input canvas → probability and mask on the original canvas of
    ``canvas`` (bilinear, the axes of :meth:`Result.original_crops`; mask: resized 0/1 > 0.5)."""

    def __init__(self, canvas: EdgeCanvas, mask_shape: tuple[int, int]):
        self.canvas = canvas
        self.axes = unpad_axes(tuple(mask_shape), canvas.shape)

    def __call__(self, x0: int, y0: int, logits: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            prob = 1 / (1 + np.exp(-logits.astype(np.float32)))
        c0, r0, p = rescale_crop(x0, y0, prob, *self.axes)
        _, _, m = rescale_crop(x0, y0, logits > 0, *self.axes)
        self.canvas.add(c0, r0, p, m > 0.5)
