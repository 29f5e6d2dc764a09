"""Mask assembly from prototypes and coefficients, one kept box at a time.

The reference (ultralytics ``process_mask_native`` / ``process_mask``) upsamples every mask logit map to
the full output size, thresholds at 0 and crops to the box. Bilinear resizing is separable and linear, so
the same pixels come from one small sparse map per axis (:class:`Axis`, a few taps per output pixel). For each
box only its own rows and columns are computed, so memory scales with the kept boxes' areas, never with
N × H × W.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np


class MaskCrop(NamedTuple):
    """One instance mask: ``mask`` (h, w) bool placed at column ``x0``, row ``y0`` of its canvas (pixels)."""

    x0: int
    y0: int
    mask: np.ndarray


class Axis(NamedTuple):
    """A resize along one axis in sparse form: output i = sum_k w[i, k] * input[idx[i, k]].

    idx: (out, K) int64 source indices; w: (out, K) float32 weights (K = most taps of any output).
    """

    idx: np.ndarray
    w: np.ndarray


def resize_matrix(in_size: int, out_size: int, scale: float | None = None) -> np.ndarray:
    """Bilinear resize along one axis as a matrix (out_size, in_size) float32.

    Half-pixel centres, no antialiasing, source index clamped at 0 and at ``in_size - 1`` (torch
    ``F.interpolate(mode="bilinear", align_corners=False)``). ``scale`` = input/output step, default
    ``in_size / out_size``.
    """
    s = np.float32(in_size / out_size if scale is None else scale)
    src = np.maximum(s * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    lam = np.clip(src - i0, 0, 1).astype(np.float32)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    w[rows, i0] += 1 - lam
    w[rows, i1] += lam
    return w


@lru_cache(maxsize=16)
def unpad_axes(canvas_shape: tuple[int, int], orig_shape: tuple[int, int], f: int = 1) -> tuple[Axis, Axis]:
    """Axes from a letterboxed canvas (ch, cw) to the original (h0, w0): ``scale_masks`` of the reference.

    The canvas is first upsampled by ``f`` (bilinear), then its centred content — size round(h0·g) ×
    round(w0·g) with g = min(f·ch/h0, f·cw/w0), offset round(pad/2 - 0.1) — is resized to (h0, w0).
    """
    (ch, cw), (h, w) = canvas_shape, orig_shape
    ih, iw = f * ch, f * cw
    g = min(ih / h, iw / w)
    nh, nw = max(round(h * g), 1), max(round(w * g), 1)
    top, left = round((ih - nh) / 2 - 0.1), round((iw - nw) / 2 - 0.1)

    def axis(m: int, out: int, start: int, content: int) -> Axis:
        up = resize_matrix(m, f * m, scale=1 / f) if f > 1 else np.eye(m, dtype=np.float32)
        return sparse_axis(resize_matrix(content, out) @ up[start : start + content])

    return axis(ch, h, top, nh), axis(cw, w, left, nw)


def retina_axes(proto_shape: tuple[int, int], orig_shape: tuple[int, int]) -> tuple[Axis, Axis]:
    """Axes for masks at the original image size: y (h0 outputs from mh), x (w0 outputs from mw).

    Reproduces ``process_mask_native``: a pre-upsample by f ∈ {1, 2, 4} so that the letterbox padding
    falls on whole pixels, then :func:`unpad_axes`. Assumes the network input is 4 × the prototype size.
    """
    mh, mw = proto_shape
    h, w = orig_shape
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    return unpad_axes(proto_shape, orig_shape, f=4 // math.gcd(4, pad | pad // 2))


@lru_cache(maxsize=16)
def input_axes(proto_shape: tuple[int, int], input_shape: tuple[int, int]) -> tuple[Axis, Axis]:
    """Axes for masks at the network-input size (``process_mask(..., upsample=True)``)."""
    (mh, mw), (H, W) = proto_shape, input_shape
    return sparse_axis(resize_matrix(mh, H)), sparse_axis(resize_matrix(mw, W))


def box_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Pixel indices i with lo <= i < hi inside [0, size): the reference's ``crop_mask`` rule."""
    return min(max(math.ceil(lo), 0), size), min(max(math.ceil(hi), 0), size)


def sparse_axis(matrix: np.ndarray) -> Axis:
    """Dense (out, in) resize matrix → :class:`Axis` (unused taps point at a used one with weight 0)."""
    nz = matrix != 0
    k = max(int(nz.sum(1).max()), 1)
    order = np.argsort(~nz, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(matrix, order, axis=1)
    idx = np.where(w != 0, order, order[:, :1]).astype(np.int64)
    w = w.astype(np.float32)
    idx.flags.writeable = w.flags.writeable = False  # axes are cached and shared
    return Axis(idx, w)


def resample(src: np.ndarray, p0: int, q0: int, iy: np.ndarray, wy: np.ndarray, ix: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Resize the block ``src`` (whose first element is at canvas row ``p0``, column ``q0``) to the output
    rows/columns whose taps are (iy, wy) and (ix, wx): returns (len(iy), len(ix)) float32.

    Both axes are gathered tap by tap (a few taps per output pixel), the columns first when the block has
    no more rows than the output (upsampling: the column gather, the slower one, then runs on the small
    block and the rows are whole-row copies). A dense BLAS product for the columns was measured too:
    faster on an idle machine for very large upscales, 2-3x slower under load.
    """
    if src.shape[0] <= len(iy):
        return _gather(_gather(src, ix - q0, wx, axis=1), iy - p0, wy, axis=0)
    return _gather(_gather(src, iy - p0, wy, axis=0), ix - q0, wx, axis=1)


def _gather(src: np.ndarray, idx: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """sum_k w[:, k] * src.take(idx[:, k], axis), accumulated in place (one output buffer)."""
    shape = (-1, 1) if axis == 0 else (1, -1)
    out = src.take(idx[:, 0], axis=axis)
    out *= w[:, 0].reshape(shape)
    for k in range(1, idx.shape[1]):
        tap = src.take(idx[:, k], axis=axis)
        tap *= w[:, k].reshape(shape)
        out += tap
    return out


def crop_masks(
    protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, ay: Axis, ax: Axis,
    sink: Callable[[int, int, np.ndarray, np.ndarray], None] | None = None,
) -> list[MaskCrop | None]:
    """Binary masks inside each box: logit = coeffs @ protos, resized along ``ay``/``ax``, on where > 0.

    protos: (32, mh, mw) float32; coeffs: (N, 32); boxes: (N, 4) xyxy in the canvas's pixels (the canvas
    is (len(ay.idx), len(ax.idx))). Returns one :class:`MaskCrop` per box, or ``None`` where the mask is
    empty (the reference drops those detections). Work and memory per box scale with the box's area.
    ``sink(x0, y0, logits, mask)``, when given, sees each non-empty box's resized (h, w) float32 logits
    and its mask before the logits are dropped (edge maps use them: :mod:`fastsam_onnx.outputs.edges`); the masks
    are the same either way.
    """
    out: list[MaskCrop | None] = []
    if len(boxes) == 0:
        return out
    hwc = protos_hwc(protos)
    for coef, (x1, y1, x2, y2) in zip(coeffs.astype(np.float32), boxes.tolist()):
        r0, r1 = box_span(y1, y2, len(ay.idx))
        c0, c1 = box_span(x1, x2, len(ax.idx))
        if r0 >= r1 or c0 >= c1:
            out.append(None)
            continue
        full = span_logits(hwc, coef, r0, r1, c0, c1, ay, ax)
        m = full > 0
        if not m.any():
            out.append(None)
            continue
        if sink is not None:
            sink(c0, r0, full, m)
        out.append(MaskCrop(c0, r0, m))
    return out


def protos_hwc(protos: np.ndarray) -> np.ndarray:
    """(32, mh, mw) prototypes → (mh, mw, 32) contiguous: a box's block of it is then a strided view."""
    return np.ascontiguousarray(protos.transpose(1, 2, 0))


def span_logits(hwc: np.ndarray, coef: np.ndarray, r0: int, r1: int, c0: int, c1: int, ay: Axis, ax: Axis) -> np.ndarray:
    """Mask logits of one instance on canvas rows [r0, r1) and columns [c0, c1): (r1 - r0, c1 - c0) float32.

    hwc: (mh, mw, 32) from :func:`protos_hwc`; coef: (32,) float32 coefficients; only the prototype block the
    span's taps read is multiplied, then resized along ``ay``/``ax`` (the rows/columns of the span)."""
    iy, wy = ay.idx[r0:r1], ay.w[r0:r1]
    ix, wx = ax.idx[c0:c1], ax.w[c0:c1]
    p0, p1, q0, q1 = int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1
    logits = hwc[p0:p1, q0:q1] @ coef  # (p1 - p0, q1 - q0)
    return resample(logits, p0, q0, iy, wy, ix, wx)


def _touching(axis: Axis, lo: int, hi: int) -> tuple[int, int]:
    """Range of outputs whose non-zero taps read any input in [lo, hi)."""
    hit = np.flatnonzero(((axis.idx >= lo) & (axis.idx < hi) & (axis.w != 0)).any(1))
    return (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)


def rescale_crops(crops: list[MaskCrop], ay: Axis, ax: Axis, threshold: float = 0.5) -> list[MaskCrop]:
    """Binary crops on one canvas → crops on another (e.g. letterboxed → original, axes from
    :func:`unpad_axes`): bilinear resize of the 0/1 mask, on where > ``threshold`` (the reference's
    ``scale_masks(...) > 0.5``), computed only around each crop. An instance may come out empty
    (its crop is then (0, 0))."""
    out = []
    for x0, y0, m in crops:
        c0, r0, v = rescale_crop(x0, y0, m, ay, ax)
        out.append(MaskCrop(c0, r0, v > threshold) if v.size else MaskCrop(0, 0, np.zeros((0, 0), dtype=bool)))
    return out


def rescale_crop(x0: int, y0: int, m: np.ndarray, ay: Axis, ax: Axis) -> tuple[int, int, np.ndarray]:
    """One crop (bool or float, placed at column ``x0``, row ``y0``) bilinearly resized onto the canvas of
    ``ay``/``ax``, computed only where its taps reach the crop: (x0', y0', (h', w') float32), (h', w')
    = (0, 0) when it reaches no output pixel. Zero outside the crop."""
    r0, r1 = _touching(ay, y0, y0 + m.shape[0])
    c0, c1 = _touching(ax, x0, x0 + m.shape[1])
    if r0 >= r1 or c0 >= c1:
        return 0, 0, np.zeros((0, 0), dtype=np.float32)
    iy, wy = ay.idx[r0:r1], ay.w[r0:r1]
    ix, wx = ax.idx[c0:c1], ax.w[c0:c1]
    p0, q0 = int(iy.min()), int(ix.min())
    src = np.zeros((int(iy.max()) + 1 - p0, int(ix.max()) + 1 - q0), dtype=np.float32)
    ys, xs = max(y0, p0), max(x0, q0)
    ye, xe = min(y0 + m.shape[0], p0 + src.shape[0]), min(x0 + m.shape[1], q0 + src.shape[1])
    src[ys - p0 : ye - p0, xs - q0 : xe - q0] = m[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return c0, r0, resample(src, p0, q0, iy, wy, ix, wx)
