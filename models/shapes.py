"""The shapes of the demo world: one shape word rasterised to an exact mask (numpy + OpenCV only).

:func:`shape_mask` draws one of :data:`SHAPES` at a centre and radius, with its free parameters (rotation,
aspect, ...) from a random generator; :mod:`fastsam_onnx.models.synth` places and paints them into scenes.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

__all__ = ["SHAPES", "shape_mask"]

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
