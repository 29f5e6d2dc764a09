"""Seeded synthetic "demo world" for the offline demo model (numpy + OpenCV only, no torch).

Each scene is a textured background with 3-12 flat-ish, clearly coloured geometric objects
(circles, squares, stars, rings, ...) of small to large size, some overlapping.  Objects are
painted in order, later ones occluding earlier ones, and the ground truth is the *visible*
(post-occlusion) instance mask of every object, exact to the pixel: every painted object is in
the ground truth and every ground-truth pixel was painted by its object.

Every object also carries a colour word and a shape word (``"red"``, ``"circle"``), so that the
same scenes can later caption crops for a tiny CLIP ("red circle").  The named hue stays dominant:
textures (stripes, noise, gradients) only modulate the object's brightness/saturation mildly.

Conventions: images are ``(H, W, 3)`` BGR ``uint8`` (OpenCV order), masks are ``(H, W)`` ``bool``,
sizes and coordinates are in pixels, ``x`` is the column and ``y`` the row.

Public API:
    * :func:`make_scene` -- one random :class:`Scene` from a ``numpy.random.Generator``.
    * :func:`scene_for_seed` -- the scene of an integer seed (what the data sets use).
    * :func:`mask_to_polygon` -- a mask as one YOLO-style polygon (outer contours, holes joined).
    * :func:`write_yolo_dataset` -- an ultralytics YOLO-seg data set (images, labels, data.yaml).
    * :func:`render_example` -- a single demo image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "COLORS",
    "SHAPES",
    "Scene",
    "make_scene",
    "scene_for_seed",
    "shape_mask",
    "mask_to_polygon",
    "polygon_to_mask",
    "write_yolo_dataset",
    "render_example",
]

#: Named object colours, BGR uint8 base values (the hue a person would name without hesitation).
COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (40, 30, 215),
    "green": (50, 175, 40),
    "blue": (215, 80, 30),
    "yellow": (30, 225, 240),
    "orange": (20, 135, 250),
    "purple": (160, 40, 130),
    "pink": (190, 130, 250),
    "cyan": (230, 220, 40),
    "white": (245, 245, 245),
    "black": (22, 22, 22),
}

#: Shape words, one per drawable shape.
SHAPES: Tuple[str, ...] = (
    "circle",
    "ellipse",
    "square",
    "rectangle",
    "triangle",
    "diamond",
    "pentagon",
    "hexagon",
    "star",
    "ring",
)

#: Object textures (modulations of the named colour).
TEXTURES: Tuple[str, ...] = ("flat", "noise", "gradient", "stripes", "spots")

#: Background textures.
BACKGROUNDS: Tuple[str, ...] = ("noise", "gradient", "stripes", "checker", "blobs")

# Minimum radius factor per shape: thin/pointy shapes are kept a bit larger so that their
# features stay a few pixels wide at the smallest sizes.
_MIN_SCALE = {"star": 1.35, "ring": 1.25, "triangle": 1.1, "diamond": 1.1}


@dataclass
class Scene:
    """One synthetic image with its exact instance ground truth.

    Attributes:
        image: ``(H, W, 3)`` BGR ``uint8`` image.
        masks: one ``(H, W)`` ``bool`` visible mask per instance (disjoint; later objects occlude
            earlier ones), in painting order.
        colors: the colour word of each instance (a key of :data:`COLORS`).
        shapes: the shape word of each instance (one of :data:`SHAPES`).
    """

    image: np.ndarray
    masks: List[np.ndarray] = field(default_factory=list)
    colors: List[str] = field(default_factory=list)
    shapes: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.masks)

    def captions(self) -> List[str]:
        """``"<colour> <shape>"`` caption per instance, e.g. ``["red circle", ...]``."""
        return [f"{c} {s}" for c, s in zip(self.colors, self.shapes)]

    def label_map(self) -> np.ndarray:
        """``(H, W)`` ``int32`` map: 0 background, ``i + 1`` for instance ``i``."""
        out = np.zeros(self.image.shape[:2], np.int32)
        for i, m in enumerate(self.masks):
            out[m] = i + 1
        return out


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def _regular_polygon(n: int, r: float, phase: float) -> np.ndarray:
    """``(n, 2)`` float vertices of a regular n-gon of circumradius ``r`` around the origin."""
    a = phase + np.arange(n) * 2.0 * np.pi / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star(points: int, r_out: float, r_in: float, phase: float) -> np.ndarray:
    """``(2*points, 2)`` float vertices of a star around the origin."""
    a = phase + np.arange(2 * points) * np.pi / points
    rr = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.stack([rr * np.cos(a), rr * np.sin(a)], axis=1)


def _rot(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def shape_mask(
    shape: str,
    canvas_hw: Tuple[int, int],
    center: Tuple[float, float],
    radius: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rasterise one shape.

    Args:
        shape: a word of :data:`SHAPES`.
        canvas_hw: ``(H, W)`` of the output mask, pixels.
        center: ``(x, y)`` centre, pixels (may lie outside the canvas).
        radius: characteristic radius (half the size of the object's longer side), pixels.
        rng: random generator for the shape's free parameters (rotation, aspect, ...).

    Returns:
        ``(H, W)`` ``bool`` mask of the full (unoccluded) shape, clipped to the canvas.
    """
    h, w = canvas_hw
    m = np.zeros((h, w), np.uint8)
    cx, cy = center
    shift = 4  # sub-pixel vertex precision for cv2 drawing
    sc = float(1 << shift)

    def poly(pts: np.ndarray) -> None:
        p = np.round((pts + np.array([cx, cy])) * sc).astype(np.int32)
        cv2.fillPoly(m, [p], 1, lineType=cv2.LINE_8, shift=shift)

    angle = float(rng.uniform(0, 2 * np.pi))
    if shape == "circle":
        cv2.circle(m, (int(round(cx * sc)), int(round(cy * sc))), int(round(radius * sc)), 1, -1, cv2.LINE_8, shift)
    elif shape == "ellipse":
        ar = float(rng.uniform(1.5, 2.4))
        axes = (int(round(radius * sc)), int(round(radius / ar * sc)))
        cv2.ellipse(
            m, (int(round(cx * sc)), int(round(cy * sc))), axes, math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, shift
        )
    elif shape == "square":
        # Rotation kept within +-20 degrees so a square never reads as a "diamond".
        a = float(rng.uniform(-0.35, 0.35))
        s = radius / math.sqrt(2.0)
        poly(_rot(np.array([[-s, -s], [s, -s], [s, s], [-s, s]]), a))
    elif shape == "rectangle":
        ar = float(rng.uniform(1.6, 2.6))
        a, b = radius * 0.95, radius * 0.95 / ar
        poly(_rot(np.array([[-a, -b], [a, -b], [a, b], [-a, b]]), angle))
    elif shape == "triangle":
        poly(_regular_polygon(3, radius, angle))
    elif shape == "diamond":
        # An elongated rhombus standing roughly upright.
        a = float(rng.uniform(-0.3, 0.3))
        wr = float(rng.uniform(0.5, 0.7))
        poly(_rot(np.array([[0, -radius], [radius * wr, 0], [0, radius], [-radius * wr, 0]]), a))
    elif shape == "pentagon":
        poly(_regular_polygon(5, radius, angle))
    elif shape == "hexagon":
        poly(_regular_polygon(6, radius, angle))
    elif shape == "star":
        n = int(rng.integers(5, 7))
        poly(_star(n, radius, radius * float(rng.uniform(0.45, 0.55)), angle))
    elif shape == "ring":
        c = (int(round(cx * sc)), int(round(cy * sc)))
        cv2.circle(m, c, int(round(radius * sc)), 1, -1, cv2.LINE_8, shift)
        cv2.circle(m, c, int(round(radius * float(rng.uniform(0.45, 0.6)) * sc)), 0, -1, cv2.LINE_8, shift)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return m.astype(bool)


# --------------------------------------------------------------------------------------------
# Textures
# --------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, hw: Tuple[int, int], scale: float) -> np.ndarray:
    """``(H, W)`` float32 smooth noise in about [-1, 1] with blobs of ``scale`` pixels."""
    h, w = hw
    gh, gw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    n = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(n / 1.5, -1.0, 1.0)


def _linear_ramp(rng: np.random.Generator, hw: Tuple[int, int]) -> np.ndarray:
    """``(H, W)`` float32 ramp from -1 to 1 along a random direction."""
    h, w = hw
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * math.cos(a) + yy * math.sin(a)
    t -= t.min()
    return (t / max(float(t.max()), 1.0) * 2.0 - 1.0).astype(np.float32)


def _stripes(rng: np.random.Generator, hw: Tuple[int, int], period: float) -> np.ndarray:
    """``(H, W)`` float32 square-wave stripes in {-1, 1}, ``period`` pixels, random angle."""
    h, w = hw
    a = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(a) + yy * math.sin(a)) / period + rng.uniform(0, 1)
    return np.where((t % 1.0) < 0.5, 1.0, -1.0).astype(np.float32)


def _random_tint(rng: np.random.Generator, sat: float) -> np.ndarray:
    """A random BGR float colour around mid grey with saturation ``sat`` (0..1)."""
    hsv = np.uint8([[[rng.integers(0, 180), int(sat * 255), int(rng.uniform(70, 200))]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 BGR textured background, values 0..255.

    Backgrounds are muted (low saturation) so that the named object colours stand out, but
    they carry real texture: noise, gradients, stripes, checkerboards, blurred blobs.
    """
    hw = (size, size)
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    c1 = _random_tint(rng, rng.uniform(0.0, 0.35))
    c2 = _random_tint(rng, rng.uniform(0.0, 0.35))
    if kind == "noise":
        t = 0.5 + 0.5 * _smooth_noise(rng, hw, rng.uniform(4, 40))
    elif kind == "gradient":
        t = 0.5 + 0.5 * _linear_ramp(rng, hw)
    elif kind == "stripes":
        t = 0.5 + 0.5 * _stripes(rng, hw, rng.uniform(8, 60)) * rng.uniform(0.3, 0.8)
    elif kind == "checker":
        cell = int(rng.integers(12, 64))
        yy, xx = np.mgrid[0:size, 0:size]
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32) * rng.uniform(0.3, 0.8)
    else:  # blobs
        t = np.zeros(hw, np.float32)
        for _ in range(int(rng.integers(4, 14))):
            cv2.circle(
                t,
                (int(rng.integers(0, size)), int(rng.integers(0, size))),
                int(rng.integers(size // 20, size // 5)),
                float(rng.uniform(0.3, 1.0)),
                -1,
            )
        k = int(rng.integers(5, 16)) * 2 + 1
        t = cv2.GaussianBlur(t, (k, k), 0)
    bg = c1[None, None, :] * (1.0 - t[..., None]) + c2[None, None, :] * t[..., None]
    bg += rng.normal(0.0, rng.uniform(2.0, 8.0), bg.shape).astype(np.float32)
    return bg


def _object_fill(rng: np.random.Generator, color: str, hw: Tuple[int, int]) -> Tuple[np.ndarray, str]:
    """``(H, W, 3)`` float32 BGR fill (an object's bounding box) and its texture word.

    The fill is the named colour modulated mildly (brightness x0.75..1.2 and a small amount of
    grey-level noise), so the hue stays the one the colour word names.
    """
    base = np.array(COLORS[color], np.float32)
    tex = TEXTURES[int(rng.integers(len(TEXTURES)))]
    if tex == "flat":
        f = np.ones(hw, np.float32)
    elif tex == "noise":
        f = 1.0 + 0.12 * _smooth_noise(rng, hw, rng.uniform(2, 10))
    elif tex == "gradient":
        f = 1.0 + 0.18 * _linear_ramp(rng, hw)
    elif tex == "stripes":
        f = 1.0 + 0.13 * _stripes(rng, hw, rng.uniform(6, 20))
    else:  # spots
        f = 1.0 + 0.15 * np.clip(_smooth_noise(rng, hw, rng.uniform(3, 8)) * 3.0, -1.0, 1.0)
    if color == "black":
        # Darkness cannot be modulated multiplicatively; add a small grey-level texture instead.
        fill = base[None, None, :] + 30.0 * (f[..., None] - 1.0) / 0.18 * 0.5
    elif color == "white":
        fill = base[None, None, :] * np.minimum(f, 1.0)[..., None] - 6.0 * np.abs(f - 1.0)[..., None] / 0.18
    else:
        fill = base[None, None, :] * f[..., None]
    fill += rng.normal(0.0, 3.0, fill.shape).astype(np.float32)
    return fill, tex


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------


def _color_far_enough(bg_mean: np.ndarray, color: str, min_dist: float = 70.0) -> bool:
    return float(np.linalg.norm(bg_mean - np.array(COLORS[color], np.float32))) >= min_dist


def make_scene(
    rng: np.random.Generator,
    size: int = 512,
    *,
    n_objects: Optional[Tuple[int, int]] = (3, 12),
    min_visible_frac: float = 0.55,
    min_area_frac: float = 0.0015,
) -> Scene:
    """Generate one random scene.

    Objects are placed one by one; a placement is rejected (and retried elsewhere, up to a few
    times, then the object is skipped) when it would leave an earlier object with less than
    ``min_visible_frac`` of its area visible or split it into several sizeable pieces, or when
    the new object itself would be mostly outside the image.  So every painted object is a
    labelled instance and no instance is a sliver.

    Args:
        rng: the random generator (all randomness comes from it).
        size: image side, pixels (images are square).
        n_objects: ``(low, high)`` inclusive range for the number of objects attempted.
        min_visible_frac: the smallest visible fraction of an object's own area that is kept.
        min_area_frac: instances with fewer visible pixels than this fraction of the image are
            dropped (their pixels are then never painted).

    Returns:
        a :class:`Scene` with ``size x size`` image and its visible instance masks.
    """
    lo, hi = n_objects if n_objects is not None else (3, 12)
    target = int(rng.integers(lo, hi + 1))
    bg = _background(rng, size)
    min_area = max(16, int(min_area_frac * size * size))

    label = np.zeros((size, size), np.int32)  # 0 = background, k = object k (1-based)
    full_area: List[int] = []
    fills: List[Tuple[int, int, np.ndarray]] = []  # (x0, y0, bbox fill)
    colors: List[str] = []
    shapes: List[str] = []

    r_min, r_max = 0.035 * size, 0.22 * size
    for _ in range(target):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        r = math.exp(rng.uniform(math.log(r_min * _MIN_SCALE.get(shape, 1.0)), math.log(r_max)))
        placed = False
        for _try in range(8):
            cx = float(rng.uniform(-0.2 * r, size + 0.2 * r))
            cy = float(rng.uniform(-0.2 * r, size + 0.2 * r))
            sub_seed = int(rng.integers(2**63))
            m = shape_mask(shape, (size, size), (cx, cy), r, np.random.default_rng(sub_seed))
            area_in = int(m.sum())
            if area_in < min_area:
                continue
            # Full (unclipped) area: redraw the same instance (same sub-seed) on a padded canvas
            # when it touches the border; reject objects that are mostly outside the image.
            full = area_in
            if m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
                pad = int(math.ceil(r)) + 2
                full = int(
                    shape_mask(
                        shape, (size + 2 * pad, size + 2 * pad), (cx + pad, cy + pad), r,
                        np.random.default_rng(sub_seed),
                    ).sum()
                )
                if area_in < 0.6 * full:
                    continue
            ok = True
            # Check occlusion of earlier objects.
            covered = label[m]
            if covered.size:
                ids, counts = np.unique(covered[covered > 0], return_counts=True)
                for k, c in zip(ids.tolist(), counts.tolist()):
                    vis_now = int((label == k).sum())
                    left = vis_now - c
                    if left < min_visible_frac * full_area[k - 1] or left < min_area:
                        ok = False
                        break
                    rest = (label == k) & ~m
                    n, _, stats, _ = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)
                    if n > 2:
                        areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
                        if areas[1] > 20:
                            ok = False
                            break
            if not ok:
                continue
            local_bg = bg[m].mean(axis=0)
            cands = [c for c in COLORS if _color_far_enough(local_bg, c)]
            # Also avoid the colours of the objects the new one touches/overlaps.
            ring = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            touching = set(np.unique(label[ring]).tolist()) - {0}
            cands = [c for c in cands if c not in {colors[k - 1] for k in touching}] or cands
            if not cands:
                continue
            color = cands[int(rng.integers(len(cands)))]
            full_area.append(full)
            label[m] = len(full_area)
            x, y, bw, bh = cv2.boundingRect(m.astype(np.uint8))
            fill, _tex = _object_fill(rng, color, (bh, bw))
            fills.append((x, y, fill))
            colors.append(color)
            shapes.append(shape)
            placed = True
            break
        if not placed:
            continue

    # Final pass: drop instances whose visible area ended up tiny (never painted then).
    img = bg.copy()
    masks: List[np.ndarray] = []
    out_colors: List[str] = []
    out_shapes: List[str] = []
    for k in range(1, len(full_area) + 1):
        vis = label == k
        if int(vis.sum()) < min_area:
            label[vis] = 0
            continue
        x, y, fill = fills[k - 1]
        fh, fw = fill.shape[:2]
        sub = vis[y : y + fh, x : x + fw]
        img[y : y + fh, x : x + fw][sub] = fill[sub]
        masks.append(vis)
        out_colors.append(colors[k - 1])
        out_shapes.append(shapes[k - 1])
    # Mild global camera effects: a touch of blur and sensor noise (the masks stay exact).
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), float(rng.uniform(0.3, 0.8)))
    img += rng.normal(0.0, rng.uniform(0.5, 3.0), img.shape).astype(np.float32)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Scene(image=image, masks=masks, colors=out_colors, shapes=out_shapes)


def scene_for_seed(seed: int, size: int = 512) -> Scene:
    """The scene of one integer seed: ``make_scene(np.random.default_rng(seed), size)``."""
    return make_scene(np.random.default_rng(seed), size)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _join_contours(contours: Sequence[np.ndarray]) -> np.ndarray:
    """Join closed contours into one polygon with zero-width "keyhole" bridges.

    Each further contour is spliced in at the vertex pair nearest to the polygon built so far:
    the path walks to that vertex, jumps to the contour, goes once around it, and jumps back.
    The bridge is traversed in both directions so it encloses no area; holes (which
    ``cv2.findContours`` orients opposite to outer contours) stay holes under both the even-odd
    and the non-zero fill rule, and separate parts stay filled.

    Args:
        contours: closed contours, each ``(K_i, 2)`` pixel coordinates.

    Returns:
        ``(K, 2)`` polygon vertices.
    """
    poly = np.asarray(contours[0], np.float64).reshape(-1, 2)
    for c in contours[1:]:
        c = np.asarray(c, np.float64).reshape(-1, 2)
        d = ((poly[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        loop = np.concatenate([c[j:], c[: j + 1]], axis=0)  # around c, back to its start
        poly = np.concatenate([poly[: i + 1], loop, poly[i:]], axis=0)
    return poly


def mask_to_polygon(mask: np.ndarray, epsilon: float = 0.7) -> np.ndarray:
    """One polygon describing a (possibly multi-part, holed) binary mask.

    The contours come from ``cv2.findContours(..., RETR_CCOMP, CHAIN_APPROX_NONE)``, are simplified
    with ``cv2.approxPolyDP(epsilon)`` and, when there are several (parts or holes), joined with
    zero-width bridges (:func:`_join_contours`), largest outer contour first.  This is the single
    polygon per instance that the ultralytics YOLO-seg label format expects.

    Vertices are the pixel centres of boundary pixels (OpenCV's convention), so rasterising the
    polygon with ``cv2.fillPoly`` (what ultralytics does, :func:`polygon_to_mask`) gives back the
    mask up to the ``epsilon`` simplification.

    Args:
        mask: ``(H, W)`` bool mask with at least one pixel set.
        epsilon: ``approxPolyDP`` tolerance, pixels.

    Returns:
        ``(K, 2)`` float64 ``(x, y)`` vertices in pixels; empty ``(0, 2)`` for an empty mask.
    """
    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2), np.float64)
    parts = []
    for c in contours:
        a = cv2.approxPolyDP(c, epsilon, True) if len(c) > 4 else c
        parts.append((abs(cv2.contourArea(c)), a.reshape(-1, 2).astype(np.float64)))
    # Outer contours (no parent) first, largest first; holes after their outers.
    top = hierarchy[0][:, 3] < 0
    order = sorted(range(len(parts)), key=lambda k: (not top[k], -parts[k][0]))
    return _join_contours([parts[k][1] for k in order])


def polygon_to_mask(polygon: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """Rasterise a pixel polygon the way ultralytics does (``cv2.fillPoly`` of int32 vertices).

    Args:
        polygon: ``(K, 2)`` ``(x, y)`` vertices, pixels.
        hw: ``(H, W)`` of the output.

    Returns:
        ``(H, W)`` bool mask.
    """
    out = np.zeros(hw, np.uint8)
    if len(polygon):
        cv2.fillPoly(out, [np.asarray(polygon, np.int32).reshape(-1, 1, 2)], 1)
    return out.astype(bool)


def _yolo_label_lines(scene: Scene) -> List[str]:
    """YOLO-seg label lines (class 0, normalised polygon) for every instance of a scene."""
    h, w = scene.image.shape[:2]
    lines = []
    for m in scene.masks:
        poly = mask_to_polygon(m)
        if len(poly) < 3:
            continue
        xy = poly / np.array([w, h], np.float64)
        xy = np.clip(xy, 0.0, 1.0)
        lines.append("0 " + " ".join(f"{v:.5f}" for v in xy.reshape(-1)))
    return lines


def write_yolo_dataset(
    root: Path,
    n_train: int,
    n_val: int,
    seed: int,
    size: int = 512,
    *,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Path:
    """Write an ultralytics YOLO-seg data set of synthetic scenes.

    Layout::

        root/images/{train,val}/NNNNNN.png   (size x size BGR, lossless)
        root/labels/{train,val}/NNNNNN.txt   ("0 x1 y1 x2 y2 ..." per instance, normalised 0..1)
        root/data.yaml                       (path, train, val, nc: 1, names: {0: object})

    Scene ``i`` of the training split uses seed ``seed * 1_000_003 + i`` and the validation
    split ``seed * 1_000_003 + 500_000 + i``, so the set is a pure function of
    ``(n_train, n_val, seed, size)`` and held-out sets only need a different ``seed``.

    Args:
        root: output folder (created; existing files of the same names are overwritten).
        n_train: number of training images.
        n_val: number of validation images.
        seed: data set seed.
        size: image side, pixels.
        progress: optional ``callback(done, total)``.

    Returns:
        path of ``root/data.yaml``.
    """
    root = Path(root)
    total = n_train + n_val
    done = 0
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 500_000)):
        img_dir = root / "images" / split
        lbl_dir = root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            scene = scene_for_seed(seed * 1_000_003 + offset + i, size)
            name = f"{i:06d}"
            cv2.imwrite(str(img_dir / f"{name}.png"), scene.image)
            (lbl_dir / f"{name}.txt").write_text("\n".join(_yolo_label_lines(scene)) + "\n")
            done += 1
            if progress is not None:
                progress(done, total)
    yaml_path = root / "data.yaml"
    yaml_path.write_text(
        f"# Synthetic FastSAM demo world: seed={seed} size={size} n_train={n_train} n_val={n_val}\n"
        f"path: {root.resolve()}\n"
        "train: images/train\n"
        "val: images/val\n"
        "nc: 1\n"
        "names:\n"
        "  0: object\n"
    )
    return yaml_path


def render_example(seed: int = 7, size: int = 512) -> np.ndarray:
    """A single demo image: a busy scene (8-12 objects) of the demo world.

    Args:
        seed: scene seed.
        size: image side, pixels.

    Returns:
        ``(size, size, 3)`` BGR uint8 image.
    """
    return make_scene(np.random.default_rng(seed), size, n_objects=(8, 12)).image
