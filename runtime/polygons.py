"""Instance masks as polygons (OpenCV contours), for annotation tools (labelme, YOLO-seg, X-AnyLabeling).

Each connected part of a mask is one :class:`Polygon`: its outer contour and the contours of its holes
(``cv2.findContours`` with ``RETR_CCOMP``: two levels, outer boundaries and hole boundaries). Vertices are the
centres of the boundary pixels, in image pixels (x, y), as OpenCV traces them. Simplification is
``cv2.approxPolyDP`` with a tolerance relative to each contour's perimeter, as X-AnyLabeling's
``epsilon_factor``: ``epsilon * cv2.arcLength(contour, closed=True)`` pixels (0 = no simplification).
Formats that cannot hold holes (labelme, YOLO-seg, COCO polygons) take the exteriors; the COCO RLE in the
instance JSON stays the exact mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import BadArgumentError

__all__ = ["Polygon", "mask_polygons"]


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
    eps = float(epsilon)
    if not np.isfinite(eps) or not 0 <= eps < 1:
        raise BadArgumentError(f"epsilon is a fraction of the perimeter in [0, 1), got {epsilon!r}")
    m = np.asarray(mask)
    if m.ndim != 2:
        raise BadArgumentError(f"expected an (H, W) mask, got shape {m.shape}")
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
