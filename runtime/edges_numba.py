"""The edge map's per-instance work and its thinning as compiled loops (numba, the optional ``[fast]`` extra).

The same algorithm as :class:`fastsam_onnx.edges.EdgeCanvas`'s numpy path, step for step (see
:mod:`fastsam_onnx.edges` for the choices), with the same float32 arithmetic in the same order (OpenCV's
Sobel as ``(r(y-1) + r(y+1)) + 2 r(y)``), so the maps are the numpy path's (the tests compare them on
trained masks, ragged masks, image-frame crops and several bands). One instance is one call: its crop is
copied onto a padded tile (mask as uint8, values with the outside value, the image frame replicated), its
4-neighbour transitions and their Chebyshev dilation by ``band`` are computed on the tile, and every tile
pixel within ``band + 1`` px of the crop gets its Sobel gradient, masked by the band, folded into the canvas
(maximum; between equal gradients the smallest direction code). Work and memory per instance scale with its
box. Indices are unsigned so that the loops compile without negative-index checks (and vectorise).

Imported only when an edge map is made with numba available (``fastsam_onnx`` itself never imports it).
The first use on a machine compiles the loops (a few seconds) and caches them on disk (numba's cache).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["crop_edges", "thin_canvas"]

from .edges import _T1, _T2  # the direction codes' thresholds

_U = np.uint64


@njit(cache=True, nogil=True)
def _replicate(a, e, y0, x0, H, W, width):  # pragma: no cover - compiled
    """The canvas border replicated outwards on tile ``a`` (crop at tile (e, e), crop at canvas (y0, x0)),
    over the tile's first ``width`` columns: the image frame is then no edge."""
    LH = a.shape[0]
    top, bot, left, right = e - y0, e + H - y0, e - x0, e + W - x0
    for ly in range(0, top):
        a[ly, :] = a[top, :]
    for ly in range(max(bot, 0), LH):
        a[ly, :] = a[bot - 1, :]
    for ly in range(LH):
        for lx in range(0, left):
            a[ly, lx] = a[ly, left]
        for lx in range(max(right, 0), width):
            a[ly, lx] = a[ly, right - 1]


@njit(cache=True, nogil=True)
def crop_edges(t, m, x0, y0, fill, scale, b, mag, dirc):  # pragma: no cover - compiled
    """One instance into the canvas: t (h, w) float32 values (tanh(logit / 2) with ``fill`` -1 and ``scale``
    0.5, or probabilities with 0 and 1), m (h, w) uint8 mask, at column x0, row y0 (the crop inside the
    canvas); mag (H + 2, W + 2) float32 and dirc (H + 2, W + 2) uint8 canvases of an (H, W) image with a
    1-px frame (kept zero), updated in place; b the band (pixels)."""
    h, w = t.shape
    H, W = mag.shape[0] - 2, mag.shape[1] - 2
    U = _U
    r = b + 1  # transitions reach 1 px past the crop, the band b more
    e = 2 * b + 2  # the tile's margin: the dilation reads b px past that, the Sobel taps 1 px
    LH, LW = h + 2 * e, w + 2 * e
    uLW, uW, ue = U(LW), U(W + 2), U(e)
    pm = np.zeros((LH, LW), np.uint8)
    pt = np.empty((LH, LW), np.float32)
    pmf, ptf, mf, tf = pm.ravel(), pt.ravel(), m.ravel(), t.ravel()
    for i in range(ue * uLW):
        ptf[i] = fill
    for i in range(U(e + h) * uLW, U(LH) * uLW):
        ptf[i] = fill
    for y in range(U(h)):
        src, dst = y * U(w), (y + ue) * uLW
        for x in range(ue):
            ptf[dst + x] = fill
        for x in range(U(w)):
            pmf[dst + ue + x] = mf[src + x]
            ptf[dst + ue + x] = tf[src + x]
        for x in range(U(e + w), uLW):
            ptf[dst + x] = fill
    if y0 < e or x0 < e or y0 + h + e > H or x0 + w + e > W:
        _replicate(pm, e, y0, x0, H, W, LW)
        _replicate(pt, e, y0, x0, H, W, LW)
    # transitions: pixels that differ from a 4-neighbour (both sides), on the crop + 1 px
    T = np.zeros((LH, LW), np.uint8)
    Tf = T.ravel()
    for ly in range(e - 1, e + h + 1):
        base = U(ly) * uLW + U(e - 1)
        for k in range(U(w + 2)):
            q = base + k
            c = pmf[q]
            Tf[q] = (c ^ pmf[q - U(1)]) | (c ^ pmf[q + U(1)]) | (c ^ pmf[q - uLW]) | (c ^ pmf[q + uLW])
    # the band: the transitions dilated by b (Chebyshev), along rows then columns, on the crop + r px
    nr = U(w + 2 * r)
    R = np.zeros((LH, LW), np.uint8)
    Rf = R.ravel()
    for ly in range(e - 1, e + h + 1):
        base = U(ly) * uLW + U(e - r)
        for k in range(nr):
            Rf[base + k] = Tf[base + k]
        for s in range(U(1), U(b + 1)):
            for k in range(nr):
                Rf[base + k] |= Tf[base + k - s] | Tf[base + k + s]
    B = np.zeros((LH, LW), np.uint8)
    Bf = B.ravel()
    for ly in range(e - r, e + h + r):
        base = U(ly) * uLW + U(e - r)
        for k in range(nr):
            Bf[base + k] = Rf[base + k]
        for s in range(U(1), U(b + 1)):
            for k in range(nr):
                Bf[base + k] |= Rf[base + k - s * uLW] | Rf[base + k + s * uLW]
    # the gradient on the band, on the canvas part of the crop + r px, folded into the canvas
    ry0, ry1 = max(e - r, e - y0), min(e + h + r, e + H - y0)
    rx0, rx1 = max(e - r, e - x0), min(e + w + r, e + W - x0)
    if rx1 <= rx0:
        return
    two, t1, t2 = np.float32(2), _T1, _T2
    magf, dirf = mag.ravel(), dirc.ravel()
    for ly in range(ry0, ry1):
        q0 = U(ly) * uLW + U(rx0)
        o0 = U(y0 - e + ly + 1) * uW + U(x0 - e + rx0 + 1)  # (the canvas's frame)
        for k in range(U(rx1 - rx0)):
            q = q0 + k
            a_, b_, c_ = ptf[q - uLW - U(1)], ptf[q - uLW], ptf[q - uLW + U(1)]
            d_, f_ = ptf[q - U(1)], ptf[q + U(1)]
            g_, h_, i_ = ptf[q + uLW - U(1)], ptf[q + uLW], ptf[q + uLW + U(1)]
            gx = (((c_ - a_) + (i_ - g_)) + two * (f_ - d_)) * scale
            gy = (((g_ + i_) + two * h_) - ((a_ + c_) + two * b_)) * scale
            mg = np.sqrt(gx * gx + gy * gy) * np.float32(Bf[q])
            ax, ay = abs(gx), abs(gy)
            nh, nv = np.int32(ay > t1 * ax), np.int32(ay > t2 * ax)  # not horizontal; vertical
            opp = np.int32((gx < 0) != (gy < 0))
            code = 1 + nh + nv + 2 * opp * (nh - nv)  # edges.edge_directions' codes 1-4
            o = o0 + k
            cur, old = magf[o], np.int32(dirf[o])
            up, tie = np.int32(mg > cur), np.int32(mg == cur) * np.int32(mg > 0)
            dirf[o] = np.uint8(up * code + (1 - up) * (tie * min(code, old) + (1 - tie) * old))
            magf[o] = mg if mg > cur else cur


@njit(cache=True, nogil=True)
def thin_canvas(mag, dirc, regions, out):  # pragma: no cover - compiled
    """Non-maximum suppression of :func:`fastsam_onnx.edges.thin_edges` on the framed canvases of
    :func:`crop_edges`, on the (R, 4) int64 ``regions`` (y0, y1, x0, x1 of the image, which may overlap),
    into ``out`` ((H, W) float32 zeros): the kept values divided by the largest. Returns that largest (0 if none)."""
    W2 = mag.shape[1]
    uW2, uW = _U(W2), _U(out.shape[1])
    magf, dirf, outf = mag.ravel(), dirc.ravel(), out.ravel()
    size = 0
    for j in range(regions.shape[0]):
        size += (regions[j, 1] - regions[j, 0]) * (regions[j, 3] - regions[j, 2])
    kept = np.empty(min(size, out.size), np.uint64)  # each pixel is kept at most once
    n = 0
    top = np.float32(0)
    for j in range(regions.shape[0]):
        ry0, ry1, rx0, rx1 = regions[j, 0], regions[j, 1], regions[j, 2], regions[j, 3]
        for y in range(ry0, ry1):
            q0 = _U(y + 1) * uW2 + _U(rx0 + 1)
            o0 = _U(y) * uW + _U(rx0)
            for k in range(_U(rx1 - rx0)):
                q = q0 + k
                v = magf[q]
                if v == 0:
                    continue
                d = dirf[q]
                # the neighbours at +(dy, dx) and -(dy, dx) of direction code d (1-4); the frame is 0
                off = _U(1) if d == 1 else (uW2 + _U(1) if d == 2 else (uW2 if d == 3 else uW2 - _U(1)))
                if v > magf[q + off] and v >= magf[q - off] and outf[o0 + k] == 0:  # (once per pixel)
                    outf[o0 + k] = v
                    kept[n] = o0 + k
                    n += 1
                    top = max(top, v)
    for j in range(n):
        outf[kept[j]] = outf[kept[j]] / top
    return top
