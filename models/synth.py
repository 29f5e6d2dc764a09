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
    * :func:`shape_mask` -- one shape rasterised (:mod:`fastsam_onnx.models.shapes`).

The training recipes' YOLO-seg data set writer and the demo image live in the repository's
``tools/demo_dataset.py`` (not installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .shapes import SHAPES, shape_mask

__all__ = ["COLORS", "SHAPES", "Scene", "make_scene", "scene_for_seed", "shape_mask"]

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
