"""The edge map's per-instance work and its thinning as compiled loops (numba, the optional ``[fast]`` extra).

The same algorithm as :class:`fastsam_onnx.edges.EdgeCanvas`'s numpy path, step for step (see
:mod:`fastsam_onnx.edges` for the choices), with the same float32 arithmetic in the same order (OpenCV's
Sobel as ``(r(y-1) + r(y+1)) + 2 r(y)``), so the maps are the numpy path's (the tests compare them on
trained masks, ragged masks, image-frame crops, several bands and ties).

One instance is one call (:func:`crop_edges`), made while its logits are still in the cache. Its crop is
copied onto padded scratch tiles (values with the outside value, mask bytes; the image frame replicated);
the 4-neighbour transitions and their Chebyshev dilation by ``band`` are computed on the mask as 64-bit
words (8 pixels at a time); only the band's pixels, found word by word, get a Sobel gradient, folded into
the canvas (maximum; between equal gradients the smallest direction code). A canvas pixel that turns
non-zero is recorded once, so the thinning (:func:`thin_touched`) visits only the edge pixels, and the
canvases can be cleared by visiting them again (:func:`clear_touched`). Work per instance scales with its box.
Indices are unsigned so that the loops compile without negative-index checks.

Imported only when an edge map is made with this engine (``fastsam_onnx`` itself never imports numba).
The first use on a machine compiles the loops (a few seconds) and caches them on disk (numba's cache).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from .edges import _T1, _T2  # the direction codes' thresholds

__all__ = ["NumbaCanvas", "POOL_BYTES", "clear_touched", "crop_edges", "margin", "thin_touched", "tile_sizes"]

_U = np.uint64
_ONE, _ZERO, _ALL = np.uint64(1), np.uint64(0), np.uint64(0xFFFFFFFFFFFFFFFF)
_B56, _B63 = np.uint64(56), np.uint64(63)


def margin(band: int) -> int:
    """The tiles' margin (pixels) around a crop: transitions reach 1 px past it, their dilation ``band``,
    the band's reach ``band`` more, a Sobel tap 1."""
    return 2 * band + 2


def tile_sizes(h: int, w: int, band: int) -> tuple[int, int, int]:
    """(value tile pixels, mask tile 8-pixel words, bit tile 64-pixel words) of :func:`crop_edges`'s scratch
    tiles for an (h, w) crop."""
    e = margin(band)
    words = (h + 2 * e) * ((w + 2 * e + 63) // 64)
    return (h + 2 * e) * (w + 2 * e), 8 * words, words


_PACK = np.uint64(0x0102040810204080)  # 8 bytes of 0/1 times this: their bits in the top byte, byte k -> bit k


@njit(cache=True, nogil=True, inline="always")
def _columns(i, lo, hi):  # pragma: no cover - compiled
    """The bits of word ``i`` (columns 64 i to 64 i + 63) for the columns in [lo, hi)."""
    a, z = max(lo - 64 * i, 0), min(hi - 64 * i, 64)
    if z <= a:
        return _ZERO
    upper = _ALL if z == 64 else (_ONE << _U(z)) - _ONE
    return upper & ~((_ONE << _U(a)) - _ONE)


@njit(cache=True, nogil=True)
def _replicate(a, e, y0, x0, H, W):  # pragma: no cover - compiled
    """The canvas border replicated outwards on tile ``a`` (crop at tile (e, e), crop at canvas (y0, x0)):
    the image frame is then no edge."""
    LH, LW = a.shape
    top, bot, left, right = e - y0, e + H - y0, e - x0, e + W - x0
    for ly in range(0, top):
        a[ly, :] = a[top, :]
    for ly in range(max(bot, 0), LH):
        a[ly, :] = a[bot - 1, :]
    for ly in range(LH):
        for lx in range(0, left):
            a[ly, lx] = a[ly, left]
        for lx in range(max(right, 0), LW):
            a[ly, lx] = a[ly, right - 1]


@njit(cache=True, nogil=True)
def crop_edges(t, m, x0, y0, fill, scale, b, mag, dirc, touched, n, pt, pb, M, T, R):  # pragma: no cover - compiled
    """One instance into the canvas; returns the new count of ``touched``.

    t: (h, w) float32 values, tanh(logit / 2) (``fill`` -1, ``scale`` 0.5) or probabilities (0, 1); m: (h, w)
    uint8 mask (0/1); the crop lies inside the canvas at column x0, row y0. mag (H + 2, W + 2) float32 and
    dirc (H + 2, W + 2) uint8: the canvases of an (H, W) image with a 1-px frame (kept zero), updated in
    place; b: the band (pixels). Each canvas pixel that turns non-zero is written (flat framed index) to
    ``touched[n]``, ``touched[n + 1]``, ...: room for (h + 2 b + 2) (w + 2 b + 2) more is needed. pt (float32),
    pb (uint64; its bytes: the mask tile), M, T, R (uint64): scratch of at least :func:`tile_sizes`."""
    h, w = t.shape
    H, W = mag.shape[0] - 2, mag.shape[1] - 2
    U = _U
    e = 2 * b + 2
    r = b + 1  # the band reaches r px past the crop
    LH, LW = h + 2 * e, w + 2 * e  # the value tile; the mask tiles' rows: nw words of 64 pixels
    nw = (LW + 63) // 64
    uLW, uW, ue = U(LW), U(W + 2), U(e)
    pm = pb.view(np.uint8)
    tf, mf = t.ravel(), m.ravel()
    for i in range(U(LH * 8 * nw)):
        pb[i] = _ZERO
    for i in range(ue * uLW):
        pt[i] = fill
    for i in range(U(e + h) * uLW, U(LH) * uLW):
        pt[i] = fill
    for y in range(U(h)):
        src, dst, dm = y * U(w), (y + ue) * uLW, (y + ue) * U(64 * nw) + ue
        for x in range(ue):
            pt[dst + x] = fill
        for x in range(U(w)):
            pt[dst + ue + x] = tf[src + x]
        for x in range(U(e + w), uLW):
            pt[dst + x] = fill
        for x in range(U(w)):
            pm[dm + x] = mf[src + x]
    if y0 < e or x0 < e or y0 + h + e > H or x0 + w + e > W:
        _replicate(pm[: LH * 64 * nw].reshape((LH, 64 * nw)), e, y0, x0, H, W)
        _replicate(pt[: LH * LW].reshape((LH, LW)), e, y0, x0, H, W)
    for i in range(U(LH * nw)):  # the mask bytes to bits: bit k of word i = pixel 64 i + k
        acc = _ZERO
        for g in range(U(8)):
            acc |= ((pb[U(8) * i + g] * _PACK) >> _B56) << (U(8) * g)
        M[i] = acc
    # transitions: pixels that differ from a 4-neighbour (both sides), on the crop + 1 px (zero elsewhere);
    # then along each row their dilation by b
    for ly in range(e - 1, e + h + 1):
        up, mid, dn = (ly - 1) * nw, ly * nw, (ly + 1) * nw
        for i in range(nw):
            c = M[mid + i]
            prev = M[mid + i - 1] if i > 0 else _ZERO
            nxt = M[mid + i + 1] if i + 1 < nw else _ZERO
            left, right = (c << _ONE) | (prev >> _B63), (c >> _ONE) | (nxt << _B63)
            T[mid + i] = ((c ^ left) | (c ^ right) | (c ^ M[up + i]) | (c ^ M[dn + i])) & _columns(i, e - 1, e + w + 1)
        for i in range(nw):
            R[mid + i] = T[mid + i]
        for _ in range(b):
            carry = _ZERO
            for i in range(nw):
                c = R[mid + i]
                nxt = R[mid + i + 1] if i + 1 < nw else _ZERO
                R[mid + i] = c | (c << _ONE) | carry | (c >> _ONE) | (nxt << _B63)
                carry = c >> _B63
    # the band (those rows dilated by b along the columns) on the canvas part of the crop + r px: the
    # gradient at its pixels, folded into the canvas
    ry0, ry1 = max(e - r, e - y0), min(e + h + r, e + H - y0)
    rx0, rx1 = max(e - r, e - x0), min(e + w + r, e + W - x0)
    two, t1, t2 = np.float32(2), _T1, _T2
    magf, dirf = mag.ravel(), dirc.ravel()
    for ly in range(ry0, ry1):
        lo, hi = max(ly - b, e - 1), min(ly + b + 1, e + h + 1)  # the rows of R that reach this one
        o0 = U(y0 - e + ly + 1) * uW + U(x0 - e + 1)  # canvas index of tile column 0 (the canvas's frame)
        q0 = U(ly) * uLW
        for i in range(nw):
            word = _ZERO
            for k in range(lo, hi):
                word |= R[k * nw + i]
            word &= _columns(i, rx0, rx1)
            while word:
                lx = U(64 * i) + U(trailing_zeros(word))
                word &= word - _ONE
                q = q0 + lx
                a_, b_, c_ = pt[q - uLW - _ONE], pt[q - uLW], pt[q - uLW + _ONE]
                d_, f_ = pt[q - _ONE], pt[q + _ONE]
                g_, h_, i_ = pt[q + uLW - _ONE], pt[q + uLW], pt[q + uLW + _ONE]
                gx = (((c_ - a_) + (i_ - g_)) + two * (f_ - d_)) * scale
                gy = (((g_ + i_) + two * h_) - ((a_ + c_) + two * b_)) * scale
                mg = np.sqrt(gx * gx + gy * gy)
                o = o0 + lx
                cur = magf[o]
                if mg < cur or mg == 0:
                    continue
                ax, ay = abs(gx), abs(gy)
                nh, nv = np.int32(ay > t1 * ax), np.int32(ay > t2 * ax)  # not horizontal; vertical
                opp = np.int32((gx < 0) != (gy < 0))
                code = np.uint8(1 + nh + nv + 2 * opp * (nh - nv))  # edges.edge_directions' codes 1-4
                if mg > cur:
                    if cur == 0:
                        touched[n] = o
                        n += 1
                    magf[o] = mg
                    dirf[o] = code
                elif code < dirf[o]:  # an equal gradient: the smallest code
                    dirf[o] = code
    return n


@njit(cache=True, nogil=True)
def thin_touched(mag, dirc, touched, out):  # pragma: no cover - compiled
    """Non-maximum suppression of :func:`fastsam_onnx.edges.thin_edges` on the framed canvases of
    :func:`crop_edges`, visiting only the ``touched`` pixels (flat framed indices, each once), into ``out``
    ((H, W) float32 zeros): the kept values divided by the largest. Returns that largest (0 if none)."""
    uW2, W = _U(mag.shape[1]), out.shape[1]
    magf, dirf, outf = mag.ravel(), dirc.ravel(), out.ravel()
    kept = np.empty(touched.shape[0], np.uint64)
    k = 0
    top = np.float32(0)
    for j in range(touched.shape[0]):
        q = _U(touched[j])
        v = magf[q]
        d = dirf[q]
        # the neighbours at +(dy, dx) and -(dy, dx) of direction code d (1-4); the frame is 0
        off = _ONE if d == 1 else (uW2 + _ONE if d == 2 else (uW2 if d == 3 else uW2 - _ONE))
        if v > magf[q + off] and v >= magf[q - off]:
            kept[k] = q
            k += 1
            top = max(top, v)
    for j in range(k):
        q = kept[j]
        y, x = q // uW2, q % uW2
        outf[(y - _ONE) * _U(W) + x - _ONE] = magf[q] / top
    return top


@njit(cache=True, nogil=True)
def clear_touched(mag, dirc, touched):  # pragma: no cover - compiled
    """The canvases back to zeros: only the ``touched`` pixels were ever written."""
    magf, dirf = mag.ravel(), dirc.ravel()
    for j in range(touched.shape[0]):
        magf[touched[j]] = 0
        dirf[touched[j]] = 0


#: canvases kept for the next edge map of the same size (:func:`_take`), at most this many bytes in all
POOL_BYTES = 64 << 20
_pool: list[tuple[np.ndarray, np.ndarray]] = []
_pool_lock = threading.Lock()


def _take(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed (mag float32, direction uint8) canvases of ``shape``: a pooled pair when there is one."""
    with _pool_lock:
        for i, (mag, _) in enumerate(_pool):
            if mag.shape == shape:
                return _pool.pop(i)
    return np.zeros(shape, np.float32), np.zeros(shape, np.uint8)


def _give_back(mag: np.ndarray, dirc: np.ndarray) -> None:
    """Zeroed canvases into the pool, newest first, the oldest dropped beyond :data:`POOL_BYTES`."""
    with _pool_lock:
        _pool.insert(0, (mag, dirc))
        total = 0
        for i, (m, d) in enumerate(_pool):
            total += m.nbytes + d.nbytes
            if total > POOL_BYTES:
                del _pool[i:]
                break


class NumbaCanvas:
    """The numba engine of :class:`fastsam_onnx.edges.EdgeCanvas` for an (H, W) image: each instance goes into
    the canvases as it comes (:func:`crop_edges`); :meth:`finish` thins and normalises. The canvases come
    from a small pool (at most :data:`POOL_BYTES`) and go back to it zeroed; the scratch tiles grow to the
    largest crop."""

    def __init__(self, shape: tuple[int, int], band: int):
        self.shape, self.band = shape, band
        H, W = shape
        self._mag, self._dir = _take((H + 2, W + 2))
        self._touched = np.empty(min(H * W, 1 << 16), np.int64)
        self._n = 0
        self._vals = np.empty(0, np.float32)
        self._tiles = (np.empty(0, np.float32),) + tuple(np.empty(0, np.uint64) for _ in range(4))

    def add(self, x0: int, y0: int, values: np.ndarray, mask: np.ndarray, logits: bool) -> None:
        """One instance: (h, w) float32 logits (``logits``) or probabilities, its (h, w) bool mask, the crop
        inside the canvas at column ``x0``, row ``y0``."""
        h, w = values.shape
        if logits:  # tanh(logit / 2), contiguous, while the logits are in the cache
            if self._vals.size < h * w:
                self._vals = np.empty(2 * h * w, np.float32)
            t = self._vals[: h * w].reshape(h, w)
            np.tanh(np.multiply(values, np.float32(0.5), out=t), out=t)
            fill, scale = np.float32(-1), np.float32(0.5)
        else:
            t = np.ascontiguousarray(values, np.float32)
            fill, scale = np.float32(0), np.float32(1)
        px, byte_words, words = tile_sizes(h, w, self.band)
        if self._tiles[0].size < px or self._tiles[2].size < words:
            self._tiles = (np.empty(2 * px, np.float32), np.empty(2 * byte_words, np.uint64)) + tuple(
                np.empty(2 * words, np.uint64) for _ in range(3))
        r = self.band + 1
        need = self._n + (h + 2 * r) * (w + 2 * r)
        if self._touched.size < need:
            grown = np.empty(max(need, 2 * self._touched.size), np.int64)
            grown[: self._n] = self._touched[: self._n]
            self._touched = grown
        m = np.ascontiguousarray(mask).view(np.uint8)
        self._n = crop_edges(t, m, x0, y0, fill, scale, self.band, self._mag, self._dir, self._touched, self._n,
                             *self._tiles)

    def finish(self, out: np.ndarray) -> None:
        """The thinned, normalised map into ``out`` ((H, W) float32 zeros); the canvases back to the pool."""
        touched = self._touched[: self._n]
        thin_touched(self._mag, self._dir, touched, out)
        clear_touched(self._mag, self._dir, touched)
        _give_back(self._mag, self._dir)
        self._mag = self._dir = None
