"""Contours of many mask crops as compiled loops (numba, the optional ``[fast]`` extra).

The border following of Suzuki and Abe (1985) as ``cv2.findContours(mask, RETR_CCOMP, CHAIN_APPROX_NONE)``
runs it: the same raster scan, the same start pixel and first direction for outer borders (from the left
neighbour, searching clockwise) and holes (from the right neighbour), the same counter-clockwise search for
the next border pixel and the same marks (a pixel whose right neighbour was examined and is 0 is marked
"right"; a pixel first visited is marked "seen"), so every contour has OpenCV's vertices, in OpenCV's order,
from OpenCV's start pixel. :mod:`fastsam_onnx.polygons` checks it vertex for vertex against OpenCV in the tests.

What differs is the bookkeeping. OpenCV keeps a 7-bit label per border pixel (wrapping after 126 contours) and
re-traces contours to find a hole's parent; here a border pixel keeps the number of its component's outer
contour (int32). In RETR_CCOMP a hole's parent is the outer border of its component, and the run of foreground
pixels that ends at a hole's start pixel begins with a pixel marked by then (or traced there), in the same
component. The scan looks only where a row changes between 0 and foreground (tracing changes marks, never which
pixels are 0), 8 pixels at a time, and the per-contour results go into flat arrays: no Python object per contour.

Imported only when polygons are made with this engine (``fastsam_onnx`` itself never imports numba). The first
use on a machine compiles the loops (a few seconds) and caches them on disk (numba's cache).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from .polygons import Polygon, _area2, _simplify

__all__ = ["assemble", "numba_polygons", "scratch", "trace_crops"]


def numba_polygons(masks: Sequence[np.ndarray], offsets: np.ndarray, eps: float, min_points: int) -> list[list[Polygon]]:
    """Per (h, w) mask (h, w > 0; a pixel is on where its uint8 value is non-zero, as
    :func:`~fastsam_onnx.polygons.mask_polygons` reads it), its polygons in image pixels: those of
    ``mask_polygons(mask, eps, offset, min_points)``. offsets: (n, 2) int64 x0, y0, with every vertex's
    coordinates below 2**24 in magnitude (exact in float32)."""
    flat = np.concatenate([(m if m.dtype == np.bool_ else m.astype(np.uint8) != 0).view(np.uint8).reshape(-1) for m in masks])
    dims = np.empty((len(masks), 5), np.int64)
    dims[:, :2] = [m.shape for m in masks]
    sizes = dims[:, 0] * dims[:, 1]
    dims[:, 2] = np.cumsum(sizes) - sizes
    dims[:, 3:] = offsets
    tile, comp = scratch(dims)
    pts = np.empty((max(4 * int((dims[:, 0] + dims[:, 1]).sum()), 4096), 2), np.int32)
    info = np.empty((max(len(pts) // 16, 256), 5), np.int64)
    n_pts, n_contours = trace_crops(flat, dims, tile, comp, pts, info)
    if n_pts > len(pts) or n_contours > len(info):  # ragged masks: once more, with room for all
        pts, info = np.empty((n_pts, 2), np.int32), np.empty((n_contours, 5), np.int64)
        trace_crops(flat, dims, tile, comp, pts, info)
    pts, info = pts[:n_pts], info[:n_contours]
    if eps > 0 and n_contours:
        pts, info = _simplified(pts, info, eps, min_points)
    ext, ext_ptr, holes, hole_ptr = assemble(info, len(masks), min_points)
    f = pts.astype(np.float32)
    s = info[:, 2].tolist()
    e = (info[:, 2] + info[:, 3]).tolist()
    hole_pts = [f[s[k] : e[k]] for k in holes.tolist()]
    hp = hole_ptr.tolist()
    polys = [Polygon(f[s[k] : e[k]], tuple(hole_pts[hp[j] : hp[j + 1]])) for j, k in enumerate(ext.tolist())]
    ep = ext_ptr.tolist()
    return [polys[a:b] for a, b in zip(ep[:-1], ep[1:])]


def _simplified(pts: np.ndarray, info: np.ndarray, eps: float, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The traced contours simplified as :func:`~fastsam_onnx.polygons.mask_polygons` does (``polygons._simplify``);
    pts and info (start, count and twice-area columns renewed) of the result."""
    starts, lens, parent = info[:, 2], info[:, 3], info[:, 1]
    ends = starts + lens
    s, e = starts.tolist(), ends.tolist()
    contours = [pts[s[k] : e[k]].reshape(-1, 1, 2) for k in range(len(info))]
    pts, lens, starts, ends = _simplify(contours, pts, lens, starts, ends, parent, min_points, eps)
    out = info.copy()
    out[:, 2], out[:, 3] = starts, lens
    out[:, 4] = _area2(pts, starts, ends, int(np.abs(pts).max()) + 1)
    return pts, out


#: a crop pixel's byte in the scratch tile: 0 background; foreground: _FG unseen, | _SEEN once visited, | _RIGHT
#: once its right neighbour was examined and found 0 (OpenCV's "new" and "right" marks)
_FG, _SEEN, _RIGHT = 1, 2, 4
#: the 8 chain-code steps (x right, y down): 0 east, then counter-clockwise as seen on the screen
_DX = np.array([1, 1, 0, -1, -1, -1, 0, 1], np.int64)
_DY = np.array([0, -1, -1, -1, 0, 1, 1, 1], np.int64)
_LOW7, _HIGH = np.uint64(0x7F7F7F7F7F7F7F7F), np.uint64(0x8080808080808080)
#: the bytes of a word above byte b (little-endian: byte b is pixel 8 j + b)
_ABOVE = np.array([(0xFFFFFFFFFFFFFFFF << (8 * (b + 1))) & 0xFFFFFFFFFFFFFFFF for b in range(8)], np.uint64)


def scratch(dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`trace_crops`'s scratch arrays for crops of ``dims`` ((n, 2+) int64 h, w): a tile of the largest
    crop with a zero border, its rows in whole 8-byte words (uint64), and its component numbers (int32)."""
    h, w = dims[:, 0], dims[:, 1]
    most = int(((h + 2) * ((w + 9) // 8)).max(initial=1))
    return np.empty(most, np.uint64), np.empty(8 * most, np.int32)


@njit(cache=True, nogil=True)
def trace_crops(
    flat: np.ndarray, dims: np.ndarray, tile: np.ndarray, comp: np.ndarray, pts: np.ndarray, info: np.ndarray
) -> tuple[int, int]:
    """All contours of all crops, as ``cv2.findContours(crop, RETR_CCOMP, CHAIN_APPROX_NONE)`` finds them.

    flat: the crops' pixels, C order, one after the other (uint8, 0 background, 1 foreground). dims: (n, 5) int64 per crop
    h, w, its first index in ``flat``, x0, y0 (pixels; added to its vertices). tile, comp: from
    :func:`scratch`. Writes ``pts`` ((P, 2) int32 image x, y of every contour's vertices, contour after
    contour) and ``info`` ((C, 5) int64 per contour, crops in order and each crop's contours in OpenCV's
    discovery order: crop, parent (the number of a hole's outer contour; -1 for outer contours), first
    vertex, vertex count, twice the enclosed area (|shoelace sum|, exact)) as far as they reach, and returns
    (P, C): when either passes its array's length, run it again with arrays that long.
    """
    t8 = tile.view(np.uint8)
    d16 = np.empty(16, np.int64)
    P = 0
    C = 0
    for c in range(dims.shape[0]):
        h, w = dims[c, 0], dims[c, 1]
        if h == 0 or w == 0:
            continue
        S = ((w + 9) // 8) * 8  # row stride: w pixels with a zero column on each side, in whole 8-byte words
        for k in range(8):
            d16[k] = d16[k + 8] = _DX[k] + _DY[k] * S
        _fill(flat[dims[c, 2] : dims[c, 2] + h * w], h, w, S, t8)
        P, C = _scan(t8, tile, comp, d16, h, w, S, c, dims[c, 3], dims[c, 4], pts, info, P, C)
    return P, C


@njit(cache=True, nogil=True)
def _fill(src: np.ndarray, h: int, w: int, S: int, t8: np.ndarray) -> None:
    """The (h, w) crop ``src`` (flat, 0/1 bytes) into the tile, rows ``S`` bytes apart, with a zero border."""
    t8[: S + 1] = 0
    t8[(h + 1) * S : (h + 2) * S] = 0
    for y in range(h):
        a = t8[(y + 1) * S + 1 : (y + 2) * S + 1]  # the row's pixels, its right border and the next row's left
        b = src[y * w : (y + 1) * w]
        for x in range(w):  # (a loop over row views: LLVM vectorises it)
            a[x] = b[x]
        for x in range(w, S):
            a[x] = 0


@njit(cache=True, nogil=True)
def _scan(t8, tile, comp, d16, h, w, S, c, x0, y0, pts, info, P, C):
    """The raster scan of one crop's tile: every outer border and hole it finds is traced (:func:`_follow`)
    and recorded as contour C, C + 1, ... Returns the new (P, C).

    A border starts only where a row goes from 0 to foreground (an outer border when that pixel is not yet
    marked) or from foreground to 0 (a hole when the pixel before is not marked "right"). Tracing changes
    marks but never which pixels are 0, so these places are found 8 pixels at a time from the words' zero
    bytes. A hole's outer contour is the component of its run's first pixel (marked by then).
    """
    for Y in range(1, h + 1):
        row = Y * S
        inside = False  # in a run of foreground pixels
        last = -1  # the component of that run
        for j in range(row >> 3, ((row + w + 1) >> 3) + 1):
            v = tile[j]
            if v == 0 and not inside:
                continue
            fg = (((v & _LOW7) + _LOW7) | v) & _HIGH  # the top bit of every non-zero byte
            flips = (fg ^ _HIGH) if inside else fg
            while flips:
                b = np.int64(trailing_zeros(flips)) >> 3
                X = (j << 3) + b - row
                if inside:  # foreground to 0 at X
                    if X > w:  # the border column
                        break
                    if (t8[row + X - 1] & _RIGHT) == 0:  # a hole
                        start = P
                        P, area = _follow(t8, comp, d16, row + X - 1, X - 1, Y, True, last, x0 - 1, y0 - 1, pts, P)
                        if C < info.shape[0]:
                            info[C, 0], info[C, 1], info[C, 2], info[C, 3], info[C, 4] = c, last, start, P - start, area
                        C += 1
                    flips = fg & _ABOVE[b]
                else:  # 0 to foreground at X
                    if t8[row + X] == _FG:  # not marked yet: a new outer border
                        start = P
                        P, area = _follow(t8, comp, d16, row + X, X, Y, False, C, x0 - 1, y0 - 1, pts, P)
                        if C < info.shape[0]:
                            info[C, 0], info[C, 1], info[C, 2], info[C, 3], info[C, 4] = c, -1, start, P - start, area
                        last = C
                        C += 1
                    else:
                        last = comp[row + X]
                    flips = (fg ^ _HIGH) & _ABOVE[b]
                inside = not inside
    return P, C


@njit(cache=True, nogil=True)
def _follow(t8, comp, d16, i0, px, py, hole, owner, dx, dy, pts, P):
    """Follow one border from tile index ``i0`` (tile x, y ``px``, ``py``), an outer border or a hole, marking
    its pixels (and their component ``owner``) as OpenCV does; its vertices + (dx, dy) go to ``pts`` from P
    on (as far as it reaches). Returns (P after it, twice its enclosed area)."""
    s_end = 0 if hole else 4  # the first direction: clockwise from the left neighbour (outer), the right (hole)
    s = s_end
    while True:
        s = (s - 1) & 7
        i1 = i0 + d16[s]
        if t8[i1] != 0 or s == s_end:
            break
    if s == s_end:  # a single pixel
        t8[i0] = _FG | _SEEN | _RIGHT
        comp[i0] = owner
        if P < pts.shape[0]:
            pts[P, 0], pts[P, 1] = px + dx, py + dy
        return P + 1, 0
    area = 0
    i3 = i0
    while True:
        s_from = s
        i4 = i3
        while s < 15:  # counter-clockwise from the step back, for the next border pixel
            s += 1
            i4 = i3 + d16[s]
            if t8[i4] != 0:
                break
        s &= 7
        if 1 <= s <= s_from:  # the search passed the right neighbour: it is background
            t8[i3] = _FG | _SEEN | _RIGHT
            comp[i3] = owner
        elif t8[i3] == _FG:
            t8[i3] = _FG | _SEEN
            comp[i3] = owner
        if P < pts.shape[0]:
            pts[P, 0], pts[P, 1] = px + dx, py + dy
        P += 1
        nx, ny = px + _DX[s], py + _DY[s]
        area += px * ny - nx * py
        px, py = nx, ny
        if i4 == i0 and i3 == i1:
            return P, abs(area)
        i3 = i4
        s = (s + 4) & 7


@njit(cache=True, nogil=True)
def assemble(info: np.ndarray, n_crops: int, min_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The polygons from :func:`trace_crops`'s ``info`` (or the same columns after simplification), in the
    order :func:`fastsam_onnx.polygons.mask_polygons` gives them.

    A contour is kept with at least ``min_points`` vertices and a non-zero area; a hole with its outer contour.
    Returns (ext, ext_ptr, holes, hole_ptr): ``ext`` the kept outer contours, crop after crop, each crop's by
    decreasing area (ties: OpenCV's output order, the reverse of discovery), crop c's at
    ``ext[ext_ptr[c]:ext_ptr[c + 1]]``; the holes of ``ext[j]`` at ``holes[hole_ptr[j]:hole_ptr[j + 1]]``
    (OpenCV's order of children: the reverse of discovery).
    """
    C = info.shape[0]
    kept = np.empty(C, np.bool_)
    for k in range(C):
        kept[k] = info[k, 3] >= min_points and info[k, 4] > 0
    ext = np.empty(C, np.int64)
    ext_ptr = np.zeros(n_crops + 1, np.int64)
    at = np.full(C, -1, np.int64)  # position in ext of a kept outer contour
    run = np.empty(C, np.int64)
    ne = 0
    a = 0
    for c in range(n_crops):
        b = a
        while b < C and info[b, 0] == c:
            b += 1
        m = 0
        for k in range(b - 1, a - 1, -1):  # reverse discovery order: OpenCV's output order
            if info[k, 1] < 0 and kept[k]:
                run[m] = k
                m += 1
        order = np.argsort(-info[run[:m], 4], kind="mergesort")  # by decreasing area, stable
        for j in range(m):
            ext[ne] = run[order[j]]
            at[ext[ne]] = ne
            ne += 1
        ext_ptr[c + 1] = ne
        a = b
    count = np.zeros(ne + 1, np.int64)
    for k in range(C):
        p = info[k, 1]
        if p >= 0 and kept[k] and at[p] >= 0:
            count[at[p] + 1] += 1
    hole_ptr = np.cumsum(count)
    holes = np.empty(hole_ptr[ne], np.int64)
    fill = hole_ptr[:ne].copy()
    for k in range(C - 1, -1, -1):
        p = info[k, 1]
        if p >= 0 and kept[k] and at[p] >= 0:
            holes[fill[at[p]]] = k
            fill[at[p]] += 1
    return ext[:ne], ext_ptr, holes, hole_ptr
