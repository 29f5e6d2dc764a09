"""The pictures of the Prompts page: one overlay per prompt mode, on the example image with the shipped demo models.

    python tools/docs_pictures.py [--out docs/img]

Writes ``prompt-everything.jpg``, ``prompt-box.jpg``, ``prompt-points.jpg``, ``prompt-points-each.jpg``,
``prompt-points-merge.jpg``, ``prompt-text.jpg`` and ``prompt-text-all.jpg``: the instances each mode returns (in
their colours, with outlines) and the prompt itself (boxes in white, positive points green, negative points red).
The prompts are :data:`PROMPTS`, the ones ``docs/prompts.md`` shows; ``tests/test_docs.py`` checks that the page and
this tool agree. A repository tool (``tools/`` is not installed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"

#: file stem -> the keyword arguments of ``FastSAM.prompt`` it shows (the Prompts page uses the same values)
PROMPTS: dict[str, dict[str, Any]] = {
    "prompt-everything": {},
    "prompt-box": {"bboxes": [[175, 110, 350, 262]]},
    "prompt-points": {"points": [[182, 263], [355, 108], [250, 190]], "labels": [1, 1, 0]},
    "prompt-points-each": {"points": [[182, 263], [355, 108], [250, 190]], "labels": [1, 1, 0], "point_mode": "each"},
    "prompt-points-merge": {"points": [[182, 263], [355, 108], [250, 190]], "labels": [1, 1, 0], "point_mode": "merge"},
    "prompt-text": {"texts": ["blue rectangle", "yellow pentagon"]},
    "prompt-text-all": {"texts": ["orange ring"], "text_mode": "all", "text_threshold": 0.65},
}


def picture(model, everything, kwargs: dict[str, Any]) -> np.ndarray:
    """The overlay of ``model.prompt(everything, **kwargs)`` with the prompt drawn on it (BGR uint8)."""
    from fastsam_onnx.outputs.draw import draw_overlay

    result = model.prompt(everything, **kwargs) if kwargs else everything
    img = draw_overlay(result, boxes=False)
    for x1, y1, x2, y2 in kwargs.get("bboxes", []):
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (255, 255, 255), 3)
    for (x, y), lab in zip(kwargs.get("points", []), kwargs.get("labels", [])):
        cv2.circle(img, (int(x), int(y)), 9, (255, 255, 255), -1)
        cv2.circle(img, (int(x), int(y)), 7, (0, 170, 0) if lab else (0, 0, 220), -1)
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from fastsam_onnx import FastSAM
    from fastsam_onnx.models import example_image

    model = FastSAM()
    everything = model.segment(str(example_image()))
    args.out.mkdir(parents=True, exist_ok=True)
    for stem, kwargs in PROMPTS.items():
        img = picture(model, everything, kwargs)
        h, w = img.shape[:2]
        img = cv2.resize(img, (360, round(360 * h / w)), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(args.out / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(f"{stem}: {len(model.prompt(everything, **kwargs)) if kwargs else len(everything)} instances", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
