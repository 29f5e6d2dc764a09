"""Results → the JSON the server returns: the CLI's instance JSON plus polygons and a PNG overlay on request."""

from __future__ import annotations

import base64
from typing import Any

from ..result import Result
from .deadline import check_deadline


def polygons_json(result: Result, epsilon: float) -> list[list[dict[str, Any]]]:
    """Per instance, its polygons: ``{"exterior": [[x, y], ...], "holes": [[[x, y], ...], ...]}`` in pixels."""
    out = []
    for parts in result.polygons(epsilon):
        out.append([{"exterior": [[round(float(x), 2), round(float(y), 2)] for x, y in p.exterior.tolist()],
                     "holes": [[[round(float(x), 2), round(float(y), 2)] for x, y in h.tolist()] for h in p.holes]}
                    for p in parts])
    return out


def overlay_png(result: Result) -> str:
    """The overlay (masks in distinct colours with outlines, boxes, scores) as base64 PNG."""
    import cv2

    from ..outputs.draw import draw_overlay

    ok, buf = cv2.imencode(".png", draw_overlay(result))
    if not ok:  # pragma: no cover - encoding a BGR uint8 image does not fail
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def result_json(result: Result, image_id: str, *, polygons: bool = False, epsilon: float = 0.0,
                overlay: bool = False) -> dict[str, Any]:
    """:meth:`Result.to_json` (boxes, scores, areas, COCO RLE) + ``image_id``; ``polygons`` per instance and
    ``overlay_png`` when asked for."""
    out = result.to_json()
    out["image_id"] = image_id
    check_deadline()
    if polygons:
        for inst, parts in zip(out["instances"], polygons_json(result, epsilon)):
            inst["polygons"] = parts
    if overlay:
        check_deadline()
        out["overlay_png"] = overlay_png(result)
    return out
