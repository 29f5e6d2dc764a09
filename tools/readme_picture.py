"""The README's picture of the example image: its overlay, its edge map and its object proposals, side by side.

``python tools/readme_picture.py [--out docs/example-outputs.jpg] [--proposals 30]`` runs the shipped demo
model on ``models/demo/example.jpg`` and writes one image of three panels: every instance (``segment``'s overlay),
the edge map (``FastSAM.edges``, inverted: dark lines on white) and the top proposals (``segment --proposals``:
conf 0.01, boxes drawn best score last so the best are on top, brighter for a higher rank). A repository tool
(``tools/`` is not installed): it rewrites the README's picture in ``docs/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _title(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((34, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def render(n_proposals: int = 30) -> np.ndarray:
    """(h, 3w + gaps, 3) BGR uint8: overlay | edges | proposals of the demo model on the example image."""
    from fastsam_onnx import FastSAM
    from fastsam_onnx.outputs.draw import draw_overlay
    from fastsam_onnx.models import demo_bundle
    from fastsam_onnx.outputs.proposals import CONF, MAX_DET, proposal_records

    model = FastSAM()
    path = str(demo_bundle() / "example.jpg")
    result = model.segment(path, edges=True)
    overlay = draw_overlay(result)
    edges = result.edges()
    edge_img = cv2.cvtColor(255 - np.rint(np.clip(edges * 1.5, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    props = model.segment(path, conf=CONF, max_det=MAX_DET)
    recs = proposal_records(props, limit=n_proposals)
    canvas = (0.5 * result.orig_img + 0.5 * 255).astype(np.uint8)
    for rank, rec in reversed(list(enumerate(recs))):
        x, y, w, h = rec["bbox"]
        shade = int(200 * rank / max(len(recs) - 1, 1))
        cv2.rectangle(canvas, (int(x), int(y)), (int(x + w), int(y + h)), (shade, shade, 255), 2 if rank < 10 else 1)
    panels = [
        _title(overlay, f"segment everything: {len(result)} instances"),
        _title(edge_img, "edges (SAM recipe, NMS-thinned)"),
        _title(canvas, f"top {len(recs)} of {len(props)} proposals (conf {CONF})"),
    ]
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/readme_picture.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "example-outputs.jpg", help="PNG or JPEG (default: docs/example-outputs.jpg)")
    p.add_argument("--proposals", type=int, default=30, help="proposals drawn (default 30)")
    a = p.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(a.out), render(a.proposals), [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise SystemExit(f"cannot write {a.out}")
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
