"""The edge map's per-instance work and its thinning as compiled loops (numba, the optional ``[fast]`` extra).

The same algorithm as :class:`fastsam_onnx.edges.EdgeCanvas`'s numpy path, step for step (see
:mod:`fastsam_onnx.edges` for the choices), with the same float32 arithmetic in the same order (OpenCV's
Sobel as ``(r(y-1) + r(y+1)) + 2 r(y)``), so the maps are the numpy path's (the tests compare them on
trained masks, ragged masks, image-frame crops, several bands and ties).

:class:`NumbaCanvas` writes each instance's ``logit / 2`` (or probability) and mask into batch buffers while its
logits are still in the cache; a batch gets one ``tanh`` and one compiled call (:func:`batch_edges`). Per
instance, the crop is copied onto padded scratch tiles (values with the outside value, mask bytes; the image
frame replicated), the mask is packed to one bit per pixel, the 4-neighbour transitions and their Chebyshev
dilation by ``band`` are computed as 64-pixel word operations, and only the band's pixels, found bit by bit,
get a Sobel gradient, folded into the canvas (maximum; between equal gradients the smallest direction code).
The canvas of the maxima is the map that is returned: it is zeroed just before the first batch, and a pixel
that turns non-zero is recorded once, so the thinning (:func:`thin_touched`) visits only the edge pixels and
works in place, leaving the pooled direction canvas zeroed (workspaces go back to a small pool). Work per
instance scales with its box. Indices are unsigned so that the loops compile without negative-index checks.

Imported only when an edge map is made with this engine (``fastsam_onnx`` itself never imports numba).
The first use on a machine compiles the loops (a few seconds) and caches them on disk (numba's cache).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from .edges import _DX, _DY, _T1, _T2  # the direction codes' neighbour offsets and thresholds
from .errors import BadArgumentError

__all__ = ["NumbaCanvas", "POOL_BYTES", "batch_edges", "margin", "thin_touched", "tile_sizes"]

_U = np.uint64
_ONE, _ZERO, _ALL = np.uint64(1), np.uint64(0), np.uint64(0xFFFFFFFFFFFFFFFF)
_B32, _B56, _B63, _LOW32 = np.uint64(32), np.uint64(56), np.uint64(63), np.uint64(0xFFFFFFFF)
_HALF, _MINUS_ONE, _ZERO32, _ONE32 = np.float32(0.5), np.float32(-1), np.float32(0), np.float32(1)


def margin(band: int) -> int:
    """The tiles' margin (pixels) around a crop: transitions reach 1 px past it, their dilation ``band``,
    the band's reach ``band`` more, a Sobel tap 1."""
    return 2 * band + 2


def tile_sizes(h: int, w: int, band: int) -> tuple[int, int, int]:
    """(value tile pixels, mask tile 8-pixel words, bit tile 64-pixel words) of :func:`batch_edges`'s scratch
    tiles for an (h, w) crop."""
    e = margin(band)
    words = (h + 2 * e) * ((w + 2 * e + 63) // 64)
    return (h + 2 * e) * (w + 2 * e), 8 * words, words


#: 8 bytes of 0/1 (a little-endian word: numba's platforms all are) times this: their bits in the top byte, byte k
#: -> bit k
_PACK = np.uint64(0x0102040810204080)


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
def batch_edges(vals, masks, table, b, mag, dirc, touched, n, pt, pb, M, T, R):  # pragma: no cover - compiled
    """Instances into the canvas; returns the new count of ``touched``.

    vals: float32 and masks: uint8 (0/1), the crops one after the other (row-major); table: (k, 6) int64 rows
    (offset into vals/masks, h, w, x0, y0, kind), each crop inside the canvas at column x0, row y0, its values
    tanh(logit / 2) for kind 1 (outside value -1, gradient halved) or probabilities for kind 0 (0, 1). mag
    (H, W) float32 and dirc (H, W) uint8: the canvases of an (H, W) image (zeros at first), updated in place;
    b: the band (pixels). Each canvas pixel that turns non-zero is written as ``row << 32 | column`` (uint64) to
    ``touched[n]``, ``touched[n + 1]``, ...: room for the sum of (h + 2 b + 2) (w + 2 b + 2) is needed. pt
    (float32), pb (uint64; its bytes: the mask tile), M, T, R (uint64): scratch of at least :func:`tile_sizes`
    for the largest crop."""
    for j in range(table.shape[0]):
        off, h, w = table[j, 0], table[j, 1], table[j, 2]
        logits = table[j, 5] == 1
        fill, scale = (_MINUS_ONE, _HALF) if logits else (_ZERO32, _ONE32)
        n = _instance(vals[off : off + h * w], masks[off : off + h * w], h, w, table[j, 3], table[j, 4], fill, scale,
                      b, mag, dirc, touched, n, pt, pb, M, T, R)
    return n


@njit(cache=True, nogil=True, inline="always")
def _instance(tf, mf, h, w, x0, y0, fill, scale, b, mag, dirc, touched, n, pt, pb, M, T, R):  # pragma: no cover
    """One instance of :func:`batch_edges`: tf, mf its flat values and mask."""
    H, W = mag.shape
    U = _U
    e = 2 * b + 2
    r = b + 1  # the band reaches r px past the crop
    LH, LW = h + 2 * e, w + 2 * e  # the value tile; the mask tiles' rows: nw words of 64 pixels
    nw = (LW + 63) // 64
    uLW, uW, ue = U(LW), U(W), U(e)
    pm = pb.view(np.uint8)
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
        yc = U(y0 - e + ly)  # the canvas row; tile column 0 is canvas column x0 - e (unsigned: wraps, then back)
        o0, t0 = yc * uW + U(x0 - e), (yc << _B32) + U(x0 - e)
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
                        touched[n] = t0 + lx
                        n += 1
                    magf[o] = mg
                    dirf[o] = code
                elif code < dirf[o]:  # an equal gradient: the smallest code
                    dirf[o] = code
    return n


@njit(cache=True, nogil=True, inline="always")
def _near(magf, y, x, dy, dx, H, W):  # pragma: no cover - compiled
    """The canvas value at (y + dy, x + dx), 0 outside the image."""
    yy, xx = y + dy, x + dx
    return magf[yy * W + xx] if 0 <= yy < H and 0 <= xx < W else np.float32(0)


@njit(cache=True, nogil=True)
def thin_touched(mag, dirc, touched):  # pragma: no cover - compiled
    """Non-maximum suppression of :func:`fastsam_onnx.edges.thin_edges` on the canvases of :func:`batch_edges`,
    in place, visiting only the ``touched`` pixels (``row << 32 | column``, each once): ``mag`` becomes the map
    (the kept values divided by the largest, the others 0) and ``dirc`` zeros again. Returns that largest (0 if
    none)."""
    H, W = mag.shape
    uW = _U(W)
    magf, dirf = mag.ravel(), dirc.ravel()
    offs = (_DY * W + _DX).astype(np.uint64)  # the flat neighbour offsets at +(dy, dx) of direction codes 0-4
    top = np.float32(0)
    for j in range(touched.shape[0]):  # decide first (the values untouched), marking the decision in dirc
        t = touched[j]
        y, x = t >> _B32, t & _LOW32
        q = y * uW + x
        v, d = magf[q], dirf[q]
        if y - _ONE < _U(H - 2) and x - _ONE < _U(W - 2):  # inside the 1-px image frame (unsigned: 0 wraps up)
            off = offs[d]
            a, c = magf[q + off], magf[q - off]
        else:  # on the frame: outside the image counts as 0
            iy, ix, dy, dx = np.int64(y), np.int64(x), _DY[d], _DX[d]
            a, c = _near(magf, iy, ix, dy, dx, H, W), _near(magf, iy, ix, -dy, -dx, H, W)
        keep = ((v > a) & (v >= c)) | (d == 0)
        dirf[q] = np.uint8(keep)
        top = max(top, v if keep else np.float32(0))
    scale = top if top > 0 else np.float32(1)
    for j in range(touched.shape[0]):
        t = touched[j]
        q = (t >> _B32) * uW + (t & _LOW32)
        magf[q] = magf[q] / scale if dirf[q] else np.float32(0)
        dirf[q] = 0
    return top


#: workspaces (canvases, buffers) kept for the next edge map of the same size, at most this many bytes in all
POOL_BYTES = 64 << 20
#: pixels of crops gathered before they run as one batch (:meth:`NumbaCanvas.add`): the buffers' size (at most
#: the image's pixels, at least 2^16)
BATCH_PIXELS = 1 << 20
_pool: list["_Workspace"] = []
_pool_lock = threading.Lock()


class _Workspace:
    """What one edge map of an (H, W) image works in, besides the map itself: the zeroed (H, W) uint8 direction
    canvas, the batch buffers (crop values and masks, end to end), the scratch tiles (grown to the largest crop)
    and the touched-pixel list (grown as needed)."""

    def __init__(self, shape: tuple[int, int]):
        H, W = shape
        self.shape = shape
        self.dir = np.zeros((H, W), np.uint8)
        size = min(BATCH_PIXELS, max(H * W, 1 << 16))
        self.vals, self.masks = np.empty(size, np.float32), np.empty(size, np.bool_)
        self.tiles = (np.empty(0, np.float32),) + tuple(np.empty(0, np.uint64) for _ in range(4))
        self.touched = np.empty(min(H * W, 1 << 16), np.uint64)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.dir, self.vals, self.masks, self.touched, *self.tiles))

    def fit_tiles(self, h: int, w: int, band: int) -> None:
        """Scratch tiles for (h, w) crops (with some headroom)."""
        px, byte_words, words = tile_sizes(h, w, band)
        if self.tiles[0].size < px or self.tiles[2].size < words:
            px, byte_words, words = tile_sizes(h + h // 4 + 8, w + w // 4 + 8, band)
            self.tiles = (np.empty(px, np.float32), np.empty(byte_words, np.uint64)) + tuple(
                np.empty(words, np.uint64) for _ in range(3))

    def fit_touched(self, n: int, more: int) -> None:
        """Room for ``more`` entries after the first ``n`` of the touched list."""
        if n + more > self.touched.size:
            grown = np.empty(max(n + more, 2 * self.touched.size), np.uint64)
            grown[:n] = self.touched[:n]
            self.touched = grown


def _take(shape: tuple[int, int]) -> _Workspace:
    """A workspace for ``shape``: a pooled one when there is one."""
    with _pool_lock:
        for i, ws in enumerate(_pool):
            if ws.shape == shape:
                return _pool.pop(i)
    return _Workspace(shape)


def _give_back(ws: _Workspace) -> None:
    """A workspace (canvases zeroed) into the pool, newest first, the oldest dropped beyond :data:`POOL_BYTES`."""
    with _pool_lock:
        _pool.insert(0, ws)
        total = 0
        for i, w in enumerate(_pool):
            total += w.nbytes()
            if total > POOL_BYTES:
                del _pool[i:]
                break


def _spans(table: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) in the batch buffers of each stretch of consecutive logits rows of ``table``."""
    if table[:, 5].all():
        return [(int(table[0, 0]), int(table[-1, 0] + table[-1, 1] * table[-1, 2]))]
    spans: list[tuple[int, int]] = []
    for off, h, w, *_, kind in table.tolist():
        if kind and spans and spans[-1][1] == off:
            spans[-1] = (spans[-1][0], off + h * w)
        elif kind:
            spans.append((off, off + h * w))
    return spans


class NumbaCanvas:
    """The numba engine of :class:`fastsam_onnx.edges.EdgeCanvas` for an (H, W) image. :meth:`add` writes each
    crop's values (tanh(logit / 2) for logits, while they are in the cache) and mask into the batch buffers;
    a full batch, and :meth:`finish`, run them in one compiled call (:func:`batch_edges`) that folds them into
    the map itself (the maxima); :meth:`finish` thins and normalises it in place. The workspace comes from a
    small pool (at most :data:`POOL_BYTES`) and goes back to it with its direction canvas zeroed."""

    def __init__(self, shape: tuple[int, int], band: int):
        self.shape, self.band = shape, band
        self._ws = _take(shape)
        self._mag: np.ndarray | None = None  # the maxima, then (finish) the map: made by the first batch
        self._n = 0  # touched pixels so far
        self._rows: list[tuple[int, int, int, int, int, int]] = []  # batch_edges' table
        self._pos = 0  # batch buffer pixels used

    def add(self, x0: int, y0: int, values: np.ndarray, mask: np.ndarray, logits: bool) -> None:
        """One instance: (h, w) float32 logits (``logits``) or probabilities and its (h, w) bool mask, a crop
        inside the canvas at column ``x0``, row ``y0`` (pixels; ``EdgeCanvas`` cuts crops to the canvas)."""
        if self._ws is None:
            raise BadArgumentError("this edge canvas is finished: make a new EdgeCanvas for more instances")
        h, w = values.shape
        ws, size = self._ws, h * w
        if self._pos + size > ws.vals.size:
            self._run()
            if size > ws.vals.size:  # one crop larger than the buffers
                ws.vals, ws.masks = np.empty(size, np.float32), np.empty(size, np.bool_)
        pos = self._pos
        t = ws.vals[pos : pos + size]
        if logits:  # logit / 2 while the logits are in the cache; its tanh (sigmoid's 2 p - 1) when the batch runs
            np.multiply(values.reshape(-1), _HALF, out=t)
        else:
            t[:] = values.reshape(-1)
        ws.masks[pos : pos + size] = mask.reshape(-1)
        self._rows.append((pos, h, w, x0, y0, logits))
        self._pos = pos + size

    def _run(self) -> None:
        """The gathered crops, in one compiled call."""
        if not self._rows:
            return
        table = np.array(self._rows, np.int64)
        ws = self._ws
        for lo, hi in _spans(table):  # one tanh over each stretch of logits (faster than crop by crop)
            np.tanh(ws.vals[lo:hi], out=ws.vals[lo:hi])
        self._rows, self._pos = [], 0
        ws.fit_tiles(int(table[:, 1].max()), int(table[:, 2].max()), self.band)
        r2, (H, W) = 2 * self.band + 2, self.shape  # (at most every pixel of the image, once)
        ws.fit_touched(self._n, min(int(((table[:, 1] + r2) * (table[:, 2] + r2)).sum()), H * W - self._n))
        self._n = batch_edges(ws.vals, ws.masks.view(np.uint8), table, self.band, self._canvas(), ws.dir, ws.touched,
                              self._n, *ws.tiles)

    def finish(self) -> np.ndarray:
        """The (H, W) float32 map, thinned and normalised; the workspace back to the pool (the canvas is then
        finished: :meth:`add` raises, a second :meth:`finish` gives a copy of the same map)."""
        if self._ws is None:
            return self._mag.copy()
        self._run()
        ws, self._ws = self._ws, None
        thin_touched(self._canvas(), ws.dir, ws.touched[: self._n])
        _give_back(ws)
        return self._mag

    def _canvas(self) -> np.ndarray:
        """The (H, W) float32 canvas of the maxima, zeroed when first asked for (just before the first fold, so
        that part of it is still in the cache; at :meth:`finish` when no instance came)."""
        if self._mag is None:
            self._mag = np.zeros(self.shape, np.float32)
        return self._mag
