"""Instance masks as polygons (OpenCV contours), for annotation tools (labelme, YOLO-seg, X-AnyLabeling).

Each connected part of a mask is one :class:`Polygon`: its outer contour and the contours of its holes
(``cv2.findContours`` with ``RETR_CCOMP``: two levels, outer boundaries and hole boundaries). Vertices are the
centres of the boundary pixels, in image pixels (x, y), as OpenCV traces them. Simplification is
``cv2.approxPolyDP`` with a tolerance relative to each contour's perimeter, as X-AnyLabeling's
``epsilon_factor``: ``epsilon * cv2.arcLength(contour, closed=True)`` pixels (0 = no simplification).
Formats that cannot hold holes (labelme, YOLO-seg) take the outermost exteriors (:func:`crops_exteriors`: a part
in another part's hole is covered by that part's filled exterior); the COCO RLE in the instance JSON stays the
exact mask.

:func:`crops_polygons` does many masks at once, with the same output as :func:`mask_polygons` per mask: the
crops are shelf-packed, each with a border of zero pixels, into a few uint8 canvases of about ``STRIP_PX``
pixels (a larger crop is traced where it lies), one ``cv2.findContours`` call per canvas, and the contours go
back to their crops by position. OpenCV's raster scan restricted to one tile is that tile's own scan, so start
points, orientation and order are those of the per-mask call (the tests check it vertex for vertex).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from ..errors import BadArgumentError
from ..parallel import parallel_map
from .packing import KEY, layout

__all__ = ["Polygon", "crops_polygons", "crops_exteriors", "mask_polygons"]


@dataclass(frozen=True)
class Polygon:
    """One connected part of a mask.

    Attributes:
        exterior: (K, 2) float32 x, y pixel coordinates of the outer contour (K >= 3), not repeated at the end.
        holes: one (K, 2) float32 array per hole inside it.
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = field(default_factory=tuple)

    @property
    def area(self) -> float:
        """Area in square pixels enclosed by the exterior minus the holes (shoelace formula on the vertices)."""
        return _area(self.exterior) - sum(_area(h) for h in self.holes)

    def flat(self) -> list[float]:
        """The exterior as ``[x1, y1, x2, y2, ...]`` (COCO polygon / YOLO-seg order), rounded to 0.1 px."""
        return [round(float(v), 1) for v in self.exterior.reshape(-1)]


def _area(pts: np.ndarray) -> float:
    return float(cv2.contourArea(np.ascontiguousarray(pts, np.float32)))


def mask_polygons(
    mask: np.ndarray, epsilon: float = 0.0, offset: tuple[int, int] = (0, 0), min_points: int = 3
) -> list[Polygon]:
    """(H, W) bool mask → its polygons, largest exterior first.

    epsilon: simplification tolerance as a fraction of each contour's perimeter (X-AnyLabeling's
    ``epsilon_factor``, e.g. 0.001; 0 keeps every traced vertex). offset: (x0, y0) pixels added to every
    vertex (a mask crop's position in the image). Contours with fewer than ``min_points`` vertices after
    simplification, or enclosing no area (single pixels, one-pixel-wide lines), are dropped.
    """
    eps = _check_epsilon(epsilon)
    m = _check_mask(mask)
    if not m.any():
        return []
    padded = cv2.copyMakeBorder(m.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    shift = np.array([offset[0] - 1, offset[1] - 1], np.float32)

    def points(c: np.ndarray) -> tuple[np.ndarray, float] | None:
        if eps > 0:
            c = cv2.approxPolyDP(c, eps * cv2.arcLength(c, True), True)
        area = cv2.contourArea(c) if len(c) >= min_points else 0.0
        if area == 0:  # fewer than min_points vertices, or a line / point that encloses nothing
            return None
        return c.reshape(-1, 2).astype(np.float32) + shift, area

    found = []
    for i, (_, _, first_child, parent) in enumerate(hierarchy[0]):
        if parent != -1:
            continue
        exterior = points(contours[i])
        if exterior is None:
            continue
        holes, child = [], first_child
        while child != -1:
            hole = points(contours[child])
            if hole is not None:
                holes.append(hole[0])
            child = hierarchy[0][child][0]
        found.append((exterior[1], Polygon(exterior[0], tuple(holes))))
    found.sort(key=lambda item: -item[0])
    return [p for _, p in found]


def _check_epsilon(epsilon: float) -> float:
    eps = float(epsilon)
    if not np.isfinite(eps) or not 0 <= eps < 1:
        raise BadArgumentError(f"epsilon is a fraction of the perimeter in [0, 1), got {epsilon!r}")
    return eps


def _check_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise BadArgumentError(f"expected an (H, W) mask, got shape {m.shape}")
    return m


def crops_polygons(
    crops: Sequence[tuple[int, int, np.ndarray]], epsilon: float = 0.0, min_points: int = 3
) -> list[list[Polygon]]:
    """Polygons of many mask crops at once: the same as ``[mask_polygons(m, epsilon, (x0, y0), min_points)
    for x0, y0, m in crops]``, vertex for vertex, with one ``cv2.findContours`` call per packed canvas.

    crops: (x0, y0, mask) triples (:class:`~fastsam_onnx.masks.MaskCrop`): an (h, w) mask whose pixel (0, 0)
    is at column x0, row y0 of the image (pixels). Crops of size 0 or with no pixel on give ``[]``. The packed
    canvases hold at most about twice the crops' total area (with their one-pixel borders) plus one canvas,
    whatever the image size. Returns per crop its polygons, largest exterior first, in image pixels.
    """
    eps = _check_epsilon(epsilon)
    crops = list(crops)
    masks = [_check_mask(m) for _, _, m in crops]
    out: list[list[Polygon]] = [[] for _ in masks]
    live = [i for i, m in enumerate(masks) if m.size]
    if not live:
        return out
    shapes = [masks[i].shape for i in live]
    for part in _run_batches(crops, masks, live, shapes, eps, min_points, holes=True):
        for t, polys in part:
            out[live[t]] = polys
    return out


def crops_exteriors(
    crops: Sequence[tuple[int, int, np.ndarray]], epsilon: float = 0.0, min_points: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The outer contours of each crop's parts, as the formats without holes need them (labelme, YOLO-seg):
    ``cv2.RETR_EXTERNAL``, as X-AnyLabeling's ``masks_to_shapes`` and ultralytics' ``masks2segments`` trace masks.
    They are :func:`crops_polygons`' exteriors, vertex for vertex, less those of parts lying in another part's hole
    (inside its exterior, so its filled polygon covers them). As arrays, with no object per polygon: (P, 2)
    float32 vertices of every exterior end to end, (K,) int64 vertex count of each, (K,) int64 index of its crop;
    crops in order, each one's largest first."""
    eps = _check_epsilon(epsilon)
    crops = list(crops)
    masks = [_check_mask(m) for _, _, m in crops]
    live = [i for i, m in enumerate(masks) if m.size]
    parts = [p for part in _run_batches(crops, masks, live, [masks[i].shape for i in live], eps, min_points, holes=False)
             for p in part] if live else []
    if not parts:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    per_crop = {}  # batches hold crops in packing order, each crop's exteriors together: back to crop order
    live_crops = np.asarray(live, np.int64)
    for t, n, v in parts:
        crop = live_crops[t]
        cut = np.flatnonzero(np.diff(crop)) + 1
        per_crop.update(zip(crop[[0, *cut]].tolist(), zip(np.split(n, cut), np.split(v, np.cumsum(n)[cut - 1]))))
    order = np.array(sorted(per_crop), np.int64)
    lens, pts = zip(*(per_crop[c] for c in order.tolist()))
    return np.concatenate(pts), np.concatenate(lens), np.repeat(order, [len(n) for n in lens])


def _segments(starts: np.ndarray, lens: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Indices of the rows of segments ``which`` (each starts[k], lens[k] rows), end to end, in that order."""
    n = lens[which]
    total = int(n.sum())
    return np.repeat(starts[which] - (np.cumsum(n) - n), n) + np.arange(total)


def _run_batches(crops: list, masks: list, live: list, shapes: list, eps: float, min_points: int, holes: bool) -> list:
    """Pack the live crops' masks into strips, group the strips into batches and run :func:`_batch_polygons` on
    each (on the output threads): what is held at once is the contours of one batch per thread, not of every
    crop (ragged 12-MP masks trace millions of points)."""
    offs = np.array([(crops[i][0], crops[i][1]) for i in live], np.float64)  # (n, 2) x0, y0
    dim = max(map(max, shapes)) + 2  # |x|, |y| in a padded crop stay below it
    bound = float(np.abs(offs).max()) + dim  # and in the image
    exact = bound < 1 << 24 and bool((offs == np.round(offs)).all())  # integer image x, y, exact in float32
    tiles, tops, keys, strips = layout(shapes)
    geometry = (masks, live, shapes, tiles, tops, keys, offs, exact, bound, dim)
    batches, size = [], 0
    for strip in strips:
        if not batches or size + strip[1] * strip[2] > _BATCH_PX:
            batches.append([])
            size = 0
        batches[-1].append(strip)
        size += strip[1] * strip[2]
    return parallel_map(lambda batch: _batch_polygons(*_trace(batch, geometry, eps, holes), geometry, eps, min_points, holes),
                        batches)


def _trace(strips: list, geometry: tuple, eps: float, holes_too: bool) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The contours of the crops packed in ``strips`` (a batch of
    :func:`~fastsam_onnx.outputs.packing.layout`'s strips) and their (K, 4) hierarchy (RETR_CCOMP), numbered across
    the strips; without ``holes_too`` the outermost contours only (RETR_EXTERNAL: each tile is bordered by zeros,
    so no tile lies inside another's contour)."""
    masks, live, shapes = geometry[:3]
    # exteriors to simplify: traced with their straight runs' middle points left out (CHAIN_APPROX_SIMPLE), which
    # approxPolyDP never keeps: the farthest point of a run from a point or a chord is one of its ends, and an
    # outer contour starts at a corner (its top-left pixel), so the result is the same, vertex for vertex
    chain = cv2.CHAIN_APPROX_SIMPLE if eps > 0 and not holes_too else cv2.CHAIN_APPROX_NONE
    mode = cv2.RETR_CCOMP if holes_too else cv2.RETR_EXTERNAL  # no hole traced where none is kept
    contours: list[np.ndarray] = []
    hiers = []
    for y0, rows, width, placed in strips:
        if len(placed) == 1:  # a crop alone: traced where it lies (findContours reads outside it as zeros)
            i, x, y = placed[0]
            m, at = masks[live[i]], (x, y0 + y)  # as uint8 (nonzero: on); contiguous bool or uint8: no copy
            canvas = m.view(np.uint8) if m.dtype == bool and m.flags.c_contiguous else np.ascontiguousarray(m, np.uint8)
        else:
            canvas, at = np.zeros((rows, width), np.uint8), (0, y0)
            for i, x, y in placed:
                canvas[y : y + shapes[i][0], x : x + shapes[i][1]] = masks[live[i]]
        cs, hier = cv2.findContours(canvas, mode, chain, offset=at)
        if hier is None:
            continue
        hiers.append(hier[0] + np.where(hier[0] >= 0, len(contours), 0))
        contours.extend(cs)
    return contours, np.concatenate(hiers) if hiers else None


def _batch_polygons(contours: list[np.ndarray], hier: np.ndarray | None, geometry: tuple, eps: float, min_points: int,
                    holes_too: bool = True) -> list:
    """The polygons of one batch's traced ``contours`` (:func:`_trace`): (tile, polygons) per crop that has any, as
    :func:`crops_polygons` returns them; without ``holes_too`` one (tile per exterior, vertex counts, (P, 2)
    vertices) triple of arrays, as :func:`crops_exteriors` needs them."""
    masks, live, shapes, tiles, tops, keys, offs, exact, bound, dim = geometry
    if not contours or hier is None:
        return []
    lens = np.fromiter(map(len, contours), np.int64, len(contours))
    parent = hier[:, 3]
    top = parent < 0
    pts = np.concatenate(contours).reshape(-1, 2)
    ends = np.cumsum(lens)
    starts = ends - lens
    # every point of an exterior lies in its tile: the shelf by its row, then the tile by its column
    first = pts[starts[top]]
    tile = np.empty(len(contours), np.int64)
    shelf = np.searchsorted(tops, first[:, 1], "right") - 1
    tile[top] = np.searchsorted(keys, shelf * KEY + first[:, 0], "right") - 1
    tile[~top] = tile[parent[~top]]
    if eps > 0:  # contours shorter than min_points stay shorter after approxPolyDP: not simplified, dropped
        pts, lens, starts, ends = _simplify(contours, pts, lens, starts, ends, parent, min_points, eps)
    crop = tiles[tile, 0]
    origin = tiles[:, 1:] - 1  # canvas x, y of each padded crop's (0, 0), per tile
    if exact:
        # image x, y straight away: float32(padded-crop x, y) + float32(x0 - 1, y0 - 1) is exact below 2**24
        pts += _per_point((offs[tiles[:, 0]].astype(np.int64) - 1 - origin).astype(np.int32)[tile], lens)
        area2 = _area2(pts, starts, ends, bound)
        f = pts.astype(np.float32)
    else:  # as mask_polygons: float32(x, y in the padded crop) + float32(x0 - 1, y0 - 1)
        pts -= _per_point(origin.astype(np.int32)[tile], lens)
        area2 = _area2(pts, starts, ends, dim)
        f = pts.astype(np.float32)
        f += _per_point((offs - 1).astype(np.float32)[crop], lens)
    keep = (lens >= min_points) & (area2 > 0)  # as mask_polygons: a contour must enclose some area
    ext = np.flatnonzero(keep & top)
    if not len(ext):
        return []
    crop_ext = crop[ext]
    order = np.lexsort((ext, -area2[ext], crop_ext))  # by crop, largest first, ties in trace order
    ext, crop_ext = ext[order], crop_ext[order]
    if not holes_too:
        return [(crop_ext, lens[ext], f[_segments(starts, lens, ext)])]
    holes = np.flatnonzero(keep & ~top)
    holes = holes[keep[parent[holes]]]  # the holes of kept exteriors
    if len(holes):
        holes = holes[np.lexsort((_sibling_rank(hier, holes), parent[holes]))]  # by exterior, in chain order
    hole_of = parent[holes]
    lo, hi = np.searchsorted(hole_of, ext, "left").tolist(), np.searchsorted(hole_of, ext, "right").tolist()
    s, e = starts.tolist(), ends.tolist()
    hole_pts = [f[s[j] : e[j]] for j in holes.tolist()]
    polys = [Polygon(f[s[j] : e[j]], tuple(hole_pts[a:b])) for j, a, b in zip(ext.tolist(), lo, hi)]
    cut = (np.flatnonzero(np.diff(crop_ext)) + 1).tolist()
    return [(t, polys[a:b]) for t, a, b in zip(crop_ext[[0, *cut]].tolist(), [0, *cut], [*cut, len(polys)])]


_BATCH_PX = 1 << 21  # canvas pixels per batch of strips: its traced contours are what a thread holds


_SQRT2 = float(np.sqrt(np.float32(2)))  # cv2.arcLength's diagonal step (float32 sqrt), exact in any sum


def _perimeters(pts: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``cv2.arcLength(contour, closed=True)`` of every traced contour pts[starts[k]:ends[k]] ((P, 2) int32) as
    CHAIN_APPROX_NONE traces it, in bulk, also from its CHAIN_APPROX_SIMPLE trace (a run of n one-pixel steps as
    one step): the steps are along an axis (1 px each) or a diagonal (float32 sqrt(2) px each), so every partial
    sum is exact and the order of adding them does not matter."""
    step = np.empty(pts.shape, np.int64)
    np.subtract(pts[1:], pts[:-1], out=step[:-1])
    step[ends - 1] = pts[starts] - pts[ends - 1]  # each contour closes on its first vertex
    np.abs(step, out=step)
    diagonal = (step[:, 0] > 0) & (step[:, 1] > 0)  # then |dx| == |dy| one-pixel diagonal steps
    axis = np.add.reduceat(np.where(diagonal, 0, step[:, 0] + step[:, 1]), starts).astype(np.float64)
    diag = np.add.reduceat(np.where(diagonal, step[:, 0], 0), starts).astype(np.float64)
    return axis + diag * _SQRT2


def _simplify(contours, pts, lens, starts, ends, parent, min_points, eps):
    """``cv2.approxPolyDP`` of the contours with at least ``min_points`` vertices (a hole, ``parent`` >= 0: its
    outer contour too), with a tolerance of ``eps`` × their perimeter (as :func:`mask_polygons`); the others stay
    as they are (they are dropped anyway). Returns pts, lens, starts, ends of the result."""
    ok = lens >= min_points
    hole = parent >= 0
    ok[hole] &= ok[parent[hole]]
    tol = (_perimeters(pts, starts, ends) * eps).tolist()
    cs = list(contours)
    for i in np.flatnonzero(ok).tolist():
        cs[i] = cv2.approxPolyDP(cs[i], tol[i], True)
    lens = np.fromiter(map(len, cs), np.int64, len(cs))
    ends = np.cumsum(lens)
    return np.concatenate(cs).reshape(-1, 2), lens, ends - lens, ends


def _per_point(pairs: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """(N, 2) int32 or float32 → (sum(lens), 2): row k repeated lens[k] times (as one 8-byte item per row)."""
    rows = np.ascontiguousarray(pairs)
    return np.repeat(rows.view(np.int64).ravel(), lens).view(rows.dtype).reshape(-1, 2)


def _area2(pts: np.ndarray, starts: np.ndarray, ends: np.ndarray, bound: int) -> np.ndarray:
    """Twice the area enclosed by each contour: |shoelace sum| on the integer vertices, exact (as
    ``cv2.contourArea``, which sums the same integer terms in float64). pts: (P, 2) int32 x, y with
    |x|, |y| < ``bound``; contour k is pts[starts[k]:ends[k]]."""
    x, y = pts[:, 0], pts[:, 1]
    if bound >= 1 << 15:  # products or their difference could pass int32
        x, y = x.astype(np.int64), y.astype(np.int64)
    cross = np.empty(len(x), x.dtype)
    np.subtract(x[:-1] * y[1:], x[1:] * y[:-1], out=cross[:-1])
    last = ends - 1
    cross[last] = x[last] * y[starts] - x[starts] * y[last]  # each contour closes on its first vertex
    return np.abs(np.add.reduceat(cross, starts, dtype=np.int64))


def _sibling_rank(hier: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Sort key of each hole (contour numbers) along its parent's chain of children: the contour number when
    OpenCV numbers siblings in chain order (checked), else the rank found by walking the chains."""
    nxt = hier[:, 0]
    hole_ids = np.flatnonzero(hier[:, 3] >= 0)
    if np.all((nxt[hole_ids] < 0) | (nxt[hole_ids] > hole_ids)):
        return holes
    rank = np.zeros(len(hier), np.int64)
    for p in np.unique(hier[hole_ids, 3]).tolist():
        c, r = int(hier[p, 2]), 0
        while c >= 0:
            rank[c], r, c = r, r + 1, int(nxt[c])
    return rank[holes]
