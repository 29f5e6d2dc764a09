"""What the extra outputs cost: edge maps and polygons against our everything-mode post-processing.

``python -m fastsam_onnx.benchmarks.outputs [--model BUNDLE] [--image bus.jpg] [--reps 15]`` runs the session
once on the image, then times on the same network outputs (medians of ``reps`` runs after 2 warm-up runs):

- ``postprocess``: :func:`fastsam_onnx.model.postprocess` (decode/NMS, masks, fix-up), the baseline;
- ``postprocess + edges``: the same with ``edges_band`` (the edge map made from the logits as the masks are
  assembled: what ``segment(edges=True)`` and ``--edges`` do), and its edge part alone;
- ``result.edges()`` recomputed from the kept prototypes (a result that was made without ``edges=True``);
- ``result.polygons()`` (OpenCV contours of every mask) and ``polygons(epsilon=0.005)``;
- the Python-heap peak (tracemalloc) of ``postprocess`` with max_det 1000 at conf 0.01 (proposals), against
  the kept crops' bytes.

Default model: the FastSAM-s-shaped test bundle at 1024 (dynamic graph; made once by
:mod:`fastsam_onnx.benchmarks.bundles` under ``$FASTSAM_BENCH_WORK`` or /tmp/fastsam-onnx-bench). Goals: edges
≤ 50 % and polygons ≤ 20 % of the postprocess. Prints a Markdown table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

GOALS = {"edges": 0.50, "polygons": 0.20}


def median_ms(fn: Callable[[], Any], reps: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``reps`` runs after ``warmup`` runs."""
    from .timing import time_calls

    return float(np.median(time_calls(fn, reps, warmup)))


def measure(model_path: str | os.PathLike[str], image: str | os.PathLike[str], reps: int = 15, conf: float = 0.4) -> dict[str, Any]:
    """The figures of the module docstring for one bundle and one image (retina masks, iou 0.9, max_det 300)."""
    from fastsam_onnx import FastSAM
    from fastsam_onnx.image import load_image
    from fastsam_onnx.model import postprocess

    model = FastSAM(model_path)
    img = load_image(str(image))
    x, lb = model.preprocess(img, model._input_size(None))
    out0, protos = model.session.run(x)[:2]
    o, p = out0[0], protos[0]
    kw = dict(conf=conf, iou=iou_default(), max_det=300, retina_masks=True)
    result = postprocess(o, p, lb, **kw)
    edge_part: list[float] = []

    def with_edges() -> None:
        r = postprocess(o, p, lb, edges_band=1, **kw)
        edge_part.append(r._edges["ms"])

    figures: dict[str, Any] = {
        "instances": len(result),
        "conf": conf,
        "band_pixel_share": band_share(result),
        "image": f"{Path(image).name} {img.shape[1]}x{img.shape[0]}",
        "input": f"{lb.input_shape[1]}x{lb.input_shape[0]}",
        "postprocess_ms": median_ms(lambda: postprocess(o, p, lb, **kw), reps),
        "postprocess_with_edges_ms": median_ms(with_edges, reps),
    }
    figures["edges_in_pass_ms"] = float(np.median(edge_part[2:]))
    figures["edges_recomputed_ms"] = median_ms(result.edges, reps)
    figures["polygons_ms"] = median_ms(result.polygons, reps)
    figures["polygons_eps_ms"] = median_ms(lambda: result.polygons(epsilon=0.005), reps)
    base = figures["postprocess_ms"]
    figures["edges_ratio"] = figures["edges_in_pass_ms"] / base
    figures["edges_recomputed_ratio"] = figures["edges_recomputed_ms"] / base
    figures["polygons_ratio"] = figures["polygons_ms"] / base
    tracemalloc.start()
    many = postprocess(o, p, lb, conf=0.01, iou=0.9, max_det=1000, retina_masks=True)
    figures["proposals_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    figures["proposals_instances"] = len(many)
    figures["proposals_crops_mb"] = sum(c.mask.nbytes for c in many.crops) / 1e6
    return figures


def iou_default() -> float:
    return 0.9


def band_share(result: Any) -> float:
    """Boundary pixels (mask differs from a 4-neighbour) ÷ box pixels, over all instances: how ragged the masks are."""
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    edge = sum(int(cv2.morphologyEx(c.mask.view(np.uint8), cv2.MORPH_GRADIENT, k).sum()) for c in result.crops)
    return edge / max(sum(c.mask.size for c in result.crops), 1)


def markdown(f: dict[str, Any], machine: str) -> str:
    """The README table of :func:`measure`'s figures."""
    base = f["postprocess_ms"]
    rows = [
        ("our everything-mode postprocess (baseline)", base, None, None),
        ("edges, in the same pass (`segment(edges=True)`, `--edges`)", f["edges_in_pass_ms"], f["edges_ratio"], GOALS["edges"]),
        ("edges, recomputed later (`result.edges()`)", f["edges_recomputed_ms"], f["edges_recomputed_ratio"], None),
        ("polygons (`result.polygons()`)", f["polygons_ms"], f["polygons_ratio"], GOALS["polygons"]),
        ("polygons, epsilon 0.005", f["polygons_eps_ms"], f["polygons_eps_ms"] / base, None),
    ]
    lines = [
        f"Measured on {machine}; {f['image']} at input {f['input']}, conf {f['conf']}, {f['instances']} instances "
        f"(boundary pixels: {f['band_pixel_share']:.1%} of the box pixels), medians.",
        "",
        "| what | ms | ÷ postprocess | goal |",
        "|---|---:|---:|---|",
    ]
    for name, ms, ratio, goal in rows:
        g = "" if goal is None else f"≤ {goal:.0%}: **{'met' if ratio <= goal else 'missed'}**"
        lines.append(f"| {name} | {ms:.1f} | {'' if ratio is None else f'{ratio:.0%}'} | {g} |")
    lines.append("")
    lines.append(
        f"Proposals (conf 0.01, max_det 1000): {f['proposals_instances']} instances, Python-heap peak of the "
        f"postprocess {f['proposals_peak_mb']:.0f} MB for {f['proposals_crops_mb']:.0f} MB of kept mask crops."
    )
    return "\n".join(lines)


def default_model() -> Path:
    """The FastSAM-s-shaped test bundle at 1024, dynamic fp32 (made on first use; needs ``[export]``)."""
    from .bundles import Models

    work = Path(os.environ.get("FASTSAM_BENCH_WORK", Path(tempfile.gettempdir()) / "fastsam-onnx-bench"))
    bundle = Models(work).bundle("s", 1024, "fp32-dyn")
    if bundle is None:
        raise SystemExit("could not export the FastSAM-s-shaped test bundle")
    return bundle


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastsam_onnx.benchmarks.outputs", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="bundle (default: the FastSAM-s-shaped test bundle at 1024, dynamic)")
    ap.add_argument("--image", help="image (default: ultralytics' bus.jpg)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--conf", type=float, default=0.4, help="confidence threshold (default 0.4)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args(argv)
    from .cases import ultralytics_asset
    from .machine import machine_info, machine_line

    image = a.image or ultralytics_asset("bus.jpg")
    if image is None:
        raise SystemExit("no image: pass --image (bus.jpg comes with ultralytics)")
    figures = measure(a.model or default_model(), image, a.reps, a.conf)
    machine = machine_line(machine_info())
    print(markdown(figures, machine))
    if a.json is not None:
        a.json.write_text(json.dumps({"machine": machine, **figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
