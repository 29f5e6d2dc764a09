"""Edge maps from the instances' mask probabilities: the zero-shot edge detection of the SAM paper, which
FastSAM follows (SAM, appendix D.2: Sobel filtering of the unthresholded mask probability maps, values kept
only on the masks' boundaries, pixel-wise maximum over the masks, linear normalisation, edge NMS).

The choices the papers leave open, as made here:

- **Probability map**: ``sigmoid(logit)`` (computed as ``(1 + tanh(logit / 2)) / 2``, which is exactly 0 far
  outside the crop and below about 3e-8) with the logits upsampled exactly as the masks are
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
  direction is kept (one uint8 canvas) for the thinning (between equal gradients, the smallest direction
  code: the map does not depend on the instances' order).
- **Thinning**: Canny's non-maximum suppression along that gradient direction, quantised to 4 directions
  (0°, 45°, 90°, 135°): a pixel survives when it is > its neighbour on one side and >= on the other (a
  2-px plateau keeps one pixel, a 1-px line stays as it is). Only non-zero pixels are visited.
- **Normalisation**: linear, divided by the map's maximum after thinning, so the strongest edge of the
  image is 1 (the SAM paper's "linearly normalize to [0, 1]"; per image, independent of the image size).

Work and memory per instance scale with its box (plus a margin of ``2 * band + 3`` px): the instances
are processed in batches laid out on one packed canvas (:class:`EdgeCanvas`), and the whole map is
one float32 and one uint8 canvas of the output size, never an N × H × W stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from ..errors import BadArgumentError
from ..masks import Axis, input_axes, protos_hwc, rescale_crop, retina_axes, span_logits, unpad_axes

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["BAND", "EdgeCanvas", "thin_edges", "result_edges", "edge_directions"]

#: default half-width of the kept strip around each instance's boundary, pixels
BAND = 1
#: pending packed pixels (crops with their margins) that start a batch (:class:`EdgeCanvas`): bounds a
#: batch's packed canvases (about 13 bytes per packed pixel while it runs) while amortising the per-call
#: overhead over many instances
BATCH_PIXELS = 1 << 22
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
    key = (ay > _T1 * ax).view(np.uint8)  # 1: not horizontal
    key += (ay > _T2 * ax).view(np.uint8)  # 2: vertical
    key += np.not_equal(gx < 0, gy < 0).view(np.uint8) * np.uint8(3)  # opposite signs: anti-diagonal
    return _DIRECTION_OF_KEY[key]


#: (not horizontal) + (vertical) + 3 * (gx, gy of opposite signs) -> direction code
_DIRECTION_OF_KEY = np.array([1, 2, 3, 1, 4, 3], np.uint8)


class EdgeCanvas:
    """Pixel-wise maximum of per-instance boundary gradients on one (H, W) canvas; :meth:`finish` thins
    and normalises.

    ``add``/``add_logits`` only keep a reference to each instance's crop. The work runs
    in batches: the pending crops, each with a margin of ``2 * band + 3`` px, are laid out on shelves as wide as the
    canvas (:func:`shelf_pack`), so that every step is one OpenCV/numpy call over all of the batch's
    instances: the probability (sigmoid), its Sobel gradient, the band (one morphological gradient of
    the masks), the band pixels (one ``flatnonzero``), and the pixel-wise maximum into the canvas
    (``np.maximum.at``). A batch runs once its packed tiles reach ``BATCH_PIXELS``; work and memory scale with
    the boxes' areas (about 13 bytes per packed pixel while a batch runs).
    """

    def __init__(self, shape: tuple[int, int], band: int = BAND):
        self.shape = (int(shape[0]), int(shape[1]))
        self.band = check_band(band)
        H, W = self.shape
        self.seconds = 0.0
        r = self.band + 1  # transition pixels (a cross) dilated by the band: one gradient with this kernel
        k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        k[0, 0] = k[0, -1] = k[-1, 0] = k[-1, -1] = 0
        self._kernel = k
        #: margin around each packed crop: strip (band + 1) + kernel reach (band + 1) + Sobel tap (1)
        self._margin = M = 2 * self.band + 3
        # the canvases carry a frame of M px: a packed pixel and its canvas pixel then differ by one
        # offset per instance, and neighbours need no bounds checks
        self._mag = np.zeros((H + 2 * M, W + 2 * M), dtype=np.float32)
        self._dir = np.zeros((H + 2 * M, W + 2 * M), dtype=np.uint8)
        self._pending: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self._pending_kind = False
        self._pending_px = 0
        self._touched: list[np.ndarray] = []  # framed canvas indices written, per batch

    def add_logits(self, x0: int, y0: int, logits: np.ndarray, mask: np.ndarray | None = None) -> None:
        """One instance from its (h, w) float32 mask logits at column ``x0``, row ``y0`` of this canvas
        (probability = sigmoid(logits), mask = logits > 0, or ``mask`` when the caller has it)."""
        logits = np.asarray(logits, np.float32)
        self._queue(x0, y0, logits, logits > 0 if mask is None else np.asarray(mask, bool), True)

    def add(self, x0: int, y0: int, prob: np.ndarray, mask: np.ndarray) -> None:
        """One instance: (h, w) probability in [0, 1] and its (h, w) binary mask, at column ``x0``, row ``y0``."""
        self._queue(x0, y0, np.asarray(prob, np.float32), np.asarray(mask, bool), False)

    def _queue(self, x0: int, y0: int, values: np.ndarray, mask: np.ndarray, logits: bool) -> None:
        H, W = self.shape
        h, w = values.shape
        if h == 0 or w == 0 or x0 >= W or y0 >= H or x0 + w <= 0 or y0 + h <= 0:
            return
        if x0 < 0 or y0 < 0 or x0 + w > W or y0 + h > H:  # the part of the crop on the canvas
            cy0, cx0 = max(-y0, 0), max(-x0, 0)
            values, mask = values[cy0 : H - y0, cx0 : W - x0], mask[cy0 : H - y0, cx0 : W - x0]
            x0, y0 = x0 + cx0, y0 + cy0
        if self._pending and logits != self._pending_kind:
            self._run()
        self._pending.append((x0, y0, values, mask))
        self._pending_kind = logits
        self._pending_px += (values.shape[0] + 2 * self._margin) * (values.shape[1] + 2 * self._margin)
        if self._pending_px >= BATCH_PIXELS:
            self._run()

    def _run(self) -> None:
        """The pending instances, as one batch, into the canvas."""
        items, self._pending, self._pending_px = self._pending, [], 0
        if not items:
            return
        H, W = self.shape
        M, m = self._margin, self.band + 1
        W2 = W + 2 * M  # the framed canvas's width, and the packed canvas's
        sizes = [(v.shape[0] + 2 * M, v.shape[1] + 2 * M) for _, _, v, _ in items]
        pos = shelf_pack(sizes, W2)
        Hp = int(max(p[0] + s[0] for p, s in zip(pos.tolist(), sizes)))
        logits = self._pending_kind
        # probabilities, or for logits tanh(logit / 2) = 2 * sigmoid(logit) - 1 (Sobel is linear: the gradient
        # is then half tanh's), computed over the whole canvas once the crops are in (one call, not one per
        # crop); outside the crops probability 0 (tanh(-40 / 2) is exactly -1)
        vals = np.full((Hp, W2), -40.0 if logits else 0.0, np.float32)
        masks = np.zeros((Hp, W2), np.uint8)
        owner = np.full((Hp, W2), -1, np.int16 if len(items) < 1 << 15 else np.int32)  # instance of each strip pixel
        offset = np.empty(len(items), np.int64)  # framed canvas index - packed index, per instance
        for i, ((x0, y0, v, mk), (py, px)) in enumerate(zip(items, pos.tolist())):
            h, w = v.shape
            vals[py + M : py + M + h, px + M : px + M + w] = v
            masks[py + M : py + M + h, px + M : px + M + w] = mk
            offset[i] = (y0 - py) * W2 + (x0 - px)
            # the strip: the crop plus m px, on the canvas only (canvas rows/cols -> packed: + py - y0 + M)
            rows = slice(py + M + max(-m, -y0), py + M + min(h + m, H - y0))
            owner[rows, px + M + max(-m, -x0) : px + M + min(w + m, W - x0)] = i
            if y0 < M or x0 < M or y0 + h + M > H or x0 + w + M > W:
                _replicate_frame(vals, masks, py, px, h + 2 * M, w + 2 * M, M - y0, M - x0, M + H - y0, M + W - x0)
        if logits:
            np.tanh(np.multiply(vals, np.float32(0.5), out=vals), out=vals)
        band = cv2.morphologyEx(masks, cv2.MORPH_GRADIENT, self._kernel, borderType=cv2.BORDER_REPLICATE)
        at = np.flatnonzero(band.view(bool))
        who = owner.ravel()[at]
        mine = who >= 0  # (a margin replicated at the frame can give band pixels outside every strip)
        at, who = at[mine], who[mine]
        del band, masks, owner
        if at.size == 0:
            return
        gx = cv2.Sobel(vals, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE).ravel()[at]
        gy = cv2.Sobel(vals, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE).ravel()[at]
        del vals
        if logits:
            gx *= np.float32(0.5)
            gy *= np.float32(0.5)
        mag = np.sqrt(gx * gx + gy * gy)
        flat = at + offset[who]
        canvas, direction = self._mag.ravel(), self._dir.ravel()
        before = canvas[flat]
        np.maximum.at(canvas, flat, mag)
        top = np.flatnonzero((mag > 0) & (mag == canvas[flat]))  # the entries that hold their pixel's maximum
        flat, rose = flat[top], mag[top] > before[top]
        # the direction of the instance with the largest gradient; between equal ones the smallest code, so
        # that the map does not depend on the instances' order nor on how they fall into batches
        direction[flat[rose]] = 255  # (a larger gradient than any earlier batch's: its direction goes)
        np.minimum.at(direction, flat, edge_directions(gx[top], gy[top]))
        self._touched.append(flat)

    def finish(self) -> np.ndarray:
        """The (H, W) float32 edge map in [0, 1]: thinned (:func:`thin_edges`), divided by its maximum."""
        H, W = self.shape
        out = np.zeros((H, W), np.float32)
        self._run()
        if not self._touched:
            return out
        idx = np.concatenate(self._touched)  # (a pixel won in two batches appears twice: harmless)
        keep = _nms_keep(self._mag, self._dir, idx)
        idx, v = idx[keep], self._mag.ravel()[idx[keep]]
        if v.size and v.max() > 0:
            y, x = np.divmod(idx, W + 2 * self._margin)
            out[y - self._margin, x - self._margin] = v / v.max()
        return out


def _replicate_frame(vals: np.ndarray, masks: np.ndarray, py: int, px: int, th: int, tw: int,
                     top: int, left: int, bottom: int, right: int) -> None:
    """The canvas border inside a packed tile's margin (tile at row ``py``, col ``px``, (th, tw) px;
    the frame lines tile-local): the border row/column replicated outwards, so the image frame is no
    edge (the same as a replicated canvas border)."""
    for t in (vals[py : py + th, px : px + tw], masks[py : py + th, px : px + tw]):
        if top > 0:
            t[:top] = t[top]
        if bottom < th:
            t[bottom:] = t[bottom - 1]
        if left > 0:
            t[:, :left] = t[:, left : left + 1]
        if right < tw:
            t[:, right:] = t[:, right - 1 : right]


def shelf_pack(sizes: Sequence[tuple[int, int]], width: int) -> np.ndarray:
    """Lays (h, w) rectangles (each w <= ``width``) out without overlap on a canvas ``width`` px wide:
    tallest first, left to right on shelves. Returns (n, 2) int64 top-left (row, col) of each."""
    pos = np.zeros((len(sizes), 2), np.int64)
    x = y = tallest = 0
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
        h, w = sizes[i]
        if x + w > width:
            y, x, tallest = y + tallest, 0, 0
        tallest = max(tallest, h)
        pos[i] = y, x
        x += w
    return pos


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) as (1 + tanh(x / 2)) / 2: a new float32 array, no overflow."""
    out = np.multiply(x, np.float32(0.5), dtype=np.float32)
    np.tanh(out, out=out)
    out += np.float32(1)
    out *= np.float32(0.5)
    return out


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
    idx = np.flatnonzero(mag)
    idx = idx[_nms_keep(mag, direction, idx)]
    out = np.zeros_like(mag)
    out.ravel()[idx] = mag.ravel()[idx]
    return out


def _nms_keep(mag: np.ndarray, direction: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Which of the pixels ``idx`` (flat indices into the framed maps, not on the frame) survive the
    non-maximum suppression of :func:`thin_edges`: a bool array like ``idx``."""
    flat = mag.ravel()
    v = flat[idx]
    d = direction.ravel()[idx]
    off = (_DY * mag.shape[1] + _DX)[d]
    return ((v > flat[idx + off]) & (v >= flat[idx - off])) | (d == 0)


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

    def __call__(self, x0: int, y0: int, logits: np.ndarray, mask: np.ndarray | None = None) -> None:
        """One instance's (h, w) logits and, when the caller has it, its mask (logits > 0)."""
        c0, r0, p = rescale_crop(x0, y0, _sigmoid(logits), *self.axes)
        _, _, m = rescale_crop(x0, y0, logits > 0 if mask is None else mask, *self.axes)
        self.canvas.add(c0, r0, p, m > 0.5)
