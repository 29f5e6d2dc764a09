"""What the extra outputs cost: edge maps and polygons against our everything-mode post-processing.

``python tools/bench_outputs.py [--case fastsam-s|demo|all] [--model BUNDLE --image IMG] [--reps 15]``
runs the session once on the image, then times on the same network outputs, in ``reps`` rounds after 2 warm-up
rounds (medians; ratios are the medians of the per-round ratios against the postprocess of the same loop, so
that the machine's slower and faster spells hit both sides alike). The edge maps, and the polygons, get a
loop of their own that interleaves them with the baseline:

- ``postprocess``: :func:`fastsam_onnx.model.postprocess` (decode/NMS, masks, fix-up), the baseline;
- ``postprocess + edges``: the same with ``edges_band`` (the edge map made from the logits as the masks are
  assembled: what ``segment(edges=True)`` and ``--edges`` do), and its edge part alone;
- ``result.edges()`` recomputed from the kept prototypes (a result that was made without ``edges=True``), in the
  edge loop;
- ``result.polygons()`` (the contours of every mask: OpenCV's ``findContours`` on packed canvases), and
  ``polygons(epsilon=0.005)``;
- end to end: ``model.segment(image, edges=True)`` ``reps`` times, its own timings (postprocess, and the edge
  part apart): right after the network's run, when the caches hold the network's data;
- the Python-heap peak (tracemalloc) of ``postprocess`` with max_det 1000 at conf 0.01 (proposals), against
  the kept crops' bytes.

Cases (both by default; made once under ``$FASTSAM_BENCH_WORK`` or /tmp/fastsam-onnx-bench, needs ``[export]``):

- ``fastsam-s``: the FastSAM-s-shaped test bundle at 1024 (dynamic graph, ``tools/bench_models.py``)
  on bus.jpg. Its weights are test-made and untrained, so its masks are ragged noise: the worst case.
- ``demo``: the shipped demo checkpoint exported at 1024 (dynamic graph): its outputs have exactly FastSAM-s's
  shapes at 1024 ((37, 21504) and (32, 256, 256) for a square input), which is all the post-processing sees,
  and its masks are trained ones. The image is a 2 × 2 mosaic of four held-out synthetic scenes (1024 × 1024,
  :func:`fastsam_onnx.models.evaluate.heldout_scenes`), so that there are ≥ 40 instances.

Goals: edges ≤ 50 % and polygons ≤ 20 % of the postprocess. Prints Markdown tables and writes ``--json``.
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


def interleaved_ms(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times in ms of every ``fns`` entry over ``reps`` rounds (after ``warmup`` untimed rounds), the
    calls interleaved within each round, so that a slower or faster spell of the machine hits all alike."""
    from fastsam_onnx.benchmarks.timing import time_calls

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name] += time_calls(fn, 1, 0)
    return times


def measure(model_path: str | os.PathLike[str], image: str | os.PathLike[str], reps: int = 15, conf: float = 0.4) -> dict[str, Any]:
    """The figures of the module docstring for one bundle and one image (retina masks, iou 0.9, max_det 300).
    Each ``*_ms`` is a median over the reps; each ratio the median of the per-round ratios against the
    postprocess of the same loop."""
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

    def baseline() -> None:
        postprocess(o, p, lb, **kw)

    def with_edges() -> None:
        edge_part.append(postprocess(o, p, lb, edges_band=1, **kw)._edges["ms"])

    loops: dict[str, dict[str, Callable[[], Any]]] = {
        "edges": {"postprocess": baseline, "postprocess_with_edges": with_edges, "edges_recomputed": result.edges},
        "polygons": {"postprocess": baseline, "polygons": result.polygons,
                     "polygons_eps": lambda: result.polygons(epsilon=0.005)},
    }
    figures: dict[str, Any] = {
        "instances": len(result),
        "conf": conf,
        "band_pixel_share": band_share(result),
        "image": f"{Path(image).name} {img.shape[1]}x{img.shape[0]}",
        "input": f"{lb.input_shape[1]}x{lb.input_shape[0]}",
        "reps": reps,
    }
    for loop, calls in loops.items():
        t = interleaved_ms(calls, reps)
        if loop == "edges":
            t["edges_in_pass"] = edge_part[-reps:]
        base = np.array(t.pop("postprocess"))
        figures[f"postprocess_{loop}_ms"] = float(np.median(base))
        for name, ms in t.items():
            figures[f"{name}_ms"] = float(np.median(ms))
            if not name.startswith("postprocess_with"):
                figures[f"{name.replace('edges_in_pass', 'edges')}_ratio"] = float(np.median(np.array(ms) / base))
    figures["postprocess_ms"] = figures["postprocess_polygons_ms"]
    figures.update(segment_loop(model, img, reps, kw))
    tracemalloc.start()
    many = postprocess(o, p, lb, conf=0.01, iou=0.9, max_det=1000, retina_masks=True)
    figures["proposals_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    figures["proposals_instances"] = len(many)
    figures["proposals_crops_mb"] = sum(c.mask.nbytes for c in many.crops) / 1e6
    return figures


def segment_loop(model: Any, img: np.ndarray, reps: int, kw: dict[str, Any], warmup: int = 2) -> dict[str, Any]:
    """End to end, as users call it: ``model.segment(img, edges=True)`` ``reps`` times after ``warmup``; its own
    timings split the postprocess from the edge part. Right after the network's run the caches hold its data,
    not ours, so both parts are slower than in the loops above."""
    times = []
    for i in range(warmup + reps):
        timings = model.segment(img, edges=True, **kw).timings
        if i >= warmup:
            times.append((timings["postprocess"], timings["edges"]))
    t = np.array(times)
    return {"segment_postprocess_ms": float(np.median(t[:, 0])), "segment_edges_ms": float(np.median(t[:, 1])),
            "segment_edges_ratio": float(np.median(t[:, 1] / t[:, 0]))}


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
    rows = [
        ("our everything-mode postprocess (baseline)", f["postprocess_ms"], None, None),
        ("edges, in the same pass (`segment(edges=True)`, `--edges`)", f["edges_in_pass_ms"], f["edges_ratio"],
         GOALS["edges"]),
        ("edges, recomputed later (`result.edges()`)", f["edges_recomputed_ms"], f["edges_recomputed_ratio"], None),
        ("polygons (`result.polygons()`)", f["polygons_ms"], f["polygons_ratio"], GOALS["polygons"]),
        ("polygons, epsilon 0.005", f["polygons_eps_ms"], f["polygons_eps_ratio"], None),
        ("end to end: postprocess of `segment(edges=True)`, right after the network's run",
         f["segment_postprocess_ms"], None, None),
        ("end to end: its edge part (÷ the row above)", f["segment_edges_ms"], f["segment_edges_ratio"], GOALS["edges"]),
    ]
    lines = [
        f"Measured on {machine}; {f['image']} at input {f['input']}, conf {f['conf']}, {f['instances']} instances "
        f"(boundary pixels: {f['band_pixel_share']:.1%} of the box pixels); medians of {f['reps']} rounds. The edge "
        "maps, and the polygons, run in a loop of their own with the postprocess, the calls interleaved in each "
        "round; ratios are the medians of the per-round ratios against that loop's postprocess.",
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


def work_dir() -> Path:
    """Where the benchmark's bundles and images are kept (``$FASTSAM_BENCH_WORK``, else /tmp/fastsam-onnx-bench)."""
    return Path(os.environ.get("FASTSAM_BENCH_WORK", Path(tempfile.gettempdir()) / "fastsam-onnx-bench"))


def demo_1024(work: Path) -> tuple[Path, Path]:
    """(bundle, image) of the ``demo`` case: the demo checkpoint exported at 1024 (dynamic) and the 2 × 2
    mosaic of held-out synthetic scenes, made once under ``work``."""
    import cv2

    from fastsam_onnx.models import demo_bundle
    from fastsam_onnx.models.evaluate import heldout_scenes

    bundle, image = work / "demo-1024-dyn", work / "synthetic-mosaic-1024.png"
    if not (bundle / "manifest.json").is_file():
        from fastsam_onnx.export.fastsam import export_fastsam

        print(f"exporting {bundle.name}", file=sys.stderr)
        export_fastsam(demo_bundle() / "fastsam-demo.pt", bundle, imgsz=1024, dynamic=True, progress=lambda *a: None)
    if not image.is_file():
        tiles = [s.image for s in heldout_scenes(4, size=512)]
        image.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))
    return bundle, image


def default_model() -> Path:
    """The FastSAM-s-shaped test bundle at 1024, dynamic fp32 (made on first use; needs ``[export]``)."""
    from bench_models import Models  # tools/, beside this script

    bundle = Models(work_dir()).bundle("s", 1024, "fp32-dyn")
    if bundle is None:
        raise SystemExit("could not export the FastSAM-s-shaped test bundle")
    return bundle


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/bench_outputs.py", description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=("fastsam-s", "demo", "all"), default="all", help="which case (default: all)")
    ap.add_argument("--model", help="a bundle of your own (with --image) instead of the cases")
    ap.add_argument("--image", help="the image for --model")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--conf", type=float, default=0.4, help="confidence threshold (default 0.4)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args(argv)
    from fastsam_onnx.benchmarks.cases import ultralytics_asset
    from fastsam_onnx.benchmarks.machine import machine_info, machine_line

    if a.model:
        if not a.image:
            raise SystemExit("--model needs --image")
        cases = {"custom": (Path(a.model), Path(a.image))}
    else:
        cases = {}
        if a.case in ("fastsam-s", "all"):
            bus = ultralytics_asset("bus.jpg")
            if bus is None:
                raise SystemExit("no bus.jpg: it comes with ultralytics ([export])")
            cases["fastsam-s"] = (default_model(), Path(bus))
        if a.case in ("demo", "all"):
            cases["demo"] = demo_1024(work_dir())
    machine = machine_line(machine_info())
    results = {}
    for name, (model, image) in cases.items():
        results[name] = figures = measure(model, image, a.reps, a.conf)
        print(f"### {name}\n\n{markdown(figures, machine)}\n")
    if a.json is not None:
        a.json.write_text(json.dumps({"machine": machine, "cases": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
