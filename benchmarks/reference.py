"""The reference side of the benchmarks: ultralytics ``FastSAM.predict`` in PyTorch (needs the [export] extra).

torch and ultralytics are imported inside the functions that run the reference, never at import time.

Runs one :class:`~.cases.Case` with the same image, weights (the checkpoint our bundle was exported
from) and settings as our side, and reports the same figures where the reference has them:

- per stage, ultralytics' own ``results[0].speed`` (preprocess, inference, postprocess, ms per image) and the wall
  time of ``model.predict`` (end to end), after ``warmup`` calls, over ``reps`` calls;
- prompt selection on one segment-everything result with ``model.predictor.prompt(results, bboxes=... /
  points=... / texts=...)``; for texts the predictor gets ``ultralytics.nn.text_model.CLIP`` built from a local
  checkpoint (the weights our CLIP bundle was exported from), and its image and text encoders are timed
  separately by wrapping them (image: ``image_preprocess`` of every crop + ``encode_image``; text: ``tokenize``
  + ``encode_text``, which the reference never caches);
- the child's peak resident set.

Run as a child process of :func:`.children.run_case`:
``python -m fastsam_onnx.benchmarks.reference case SPEC.json OUT.json``, or
``python -m fastsam_onnx.benchmarks.reference cold CHECKPOINT OUT.json [REPS]`` for the reference's cold start.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .cases import STAGES, Case, load_case_image
from .children import cold_start, peak_rss
from .timing import box_point_timings, stage_runs, summarize

_COLD = """
import json, sys, time
t0 = time.perf_counter()
import torch
from ultralytics import FastSAM
t1 = time.perf_counter()
model = FastSAM(sys.argv[1])
model.model.eval()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "create_s": t2 - t1}))
"""


def versions() -> dict[str, Any]:
    import torch
    import ultralytics

    return {"torch": torch.__version__, "ultralytics": ultralytics.__version__, "torch_threads": torch.get_num_threads(),
            "device": "cpu"}


class _Clock:
    """Wraps callables to add up their wall time (ms) into named buckets."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def wrap(self, bucket: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[bucket] = self.ms.get(bucket, 0.0) + (time.perf_counter() - t0) * 1e3

        return timed


def _prompt_timings(model, results, case: Case, notes: list[str]) -> dict[str, Any]:
    pred = model.predictor
    p = case.prompts or {}
    out = box_point_timings(lambda **kw: pred.prompt(results, **kw)[0], p, case.reps, notes)
    texts = p.get("texts")
    if texts is None:
        return out
    if case.clip is None:
        notes.append("text prompt not timed: no reference CLIP checkpoint given")
        return out
    try:
        _text_timings(pred, results, case, list(texts), out)
    except Exception as e:  # recorded; the other figures stand
        out["text"] = {"error": f"{type(e).__name__}: {e}"}
        notes.append(f"text prompt failed: {type(e).__name__}: {e}")
    return out


def _text_timings(pred, results, case: Case, texts: list[str], out: dict[str, Any]) -> None:
    """The text prompt with ultralytics' CLIP from a local checkpoint; its encoders timed by wrapping them."""
    from ultralytics.nn.text_model import CLIP

    t0 = time.perf_counter()
    clip = CLIP(str(case.clip), device=pred.device)
    out["clip_load_s"] = time.perf_counter() - t0
    clock = _Clock()
    clip.image_preprocess = clock.wrap("clip_image", clip.image_preprocess)
    clip.encode_image = clock.wrap("clip_image", clip.encode_image)
    clip.tokenize = clock.wrap("clip_text", clip.tokenize)
    clip.encode_text = clock.wrap("clip_text", clip.encode_text)
    pred.clip = clip
    pred.prompt(results, texts=texts)  # warm-up
    total, image_ms, text_ms = [], [], []
    for _ in range(case.reps):
        clock.ms.clear()
        t0 = time.perf_counter()
        sel = pred.prompt(results, texts=texts)
        total.append((time.perf_counter() - t0) * 1e3)
        image_ms.append(clock.ms.get("clip_image", 0.0))
        text_ms.append(clock.ms.get("clip_text", 0.0))
    out["text"] = summarize(total)
    out["text_selected"] = len(sel[0])
    if any(image_ms):
        out["clip_image"] = summarize(image_ms)
    out["clip_text"] = summarize(text_ms)


def run_reference(case: Case) -> dict[str, Any]:
    """Run ``case`` with ultralytics ``FastSAM`` in PyTorch (CPU) in this process; returns the figures."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import FastSAM

    notes: list[str] = []
    t0 = time.perf_counter()
    model = FastSAM(str(case.model))
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss()
    orig, img = load_case_image(case)
    kw = dict(imgsz=case.imgsz or 1024, conf=case.conf, iou=case.iou, max_det=case.max_det, retina_masks=case.retina,
              device="cpu", verbose=False, save=False)
    baseline = None
    if case.resize is not None:
        model.predict(orig, **kw)
        if case.threads:
            torch.set_num_threads(int(case.threads))
        model.predict(orig, **kw)
        baseline = peak_rss()

    model.predict(img, **kw)  # creates the predictor (ultralytics sets torch's threads there)
    if case.threads:
        torch.set_num_threads(int(case.threads))
    shapes: list[tuple[int, ...]] = []
    pre = model.predictor.preprocess

    def preprocess(im):
        x = pre(im)
        shapes.append(tuple(x.shape))
        return x

    model.predictor.preprocess = preprocess
    for _ in range(max(0, case.warmup - 1)):
        model.predict(img, **kw)
    stages, results = stage_runs(
        lambda: model.predict(img, **kw), case.reps, lambda r: {k: float(r[0].speed[k]) for k in STAGES[:3]}
    )
    assert results is not None
    out: dict[str, Any] = {
        "side": "reference",
        **versions(),
        "image_shape": list(img.shape[:2]),
        "input_shape": list(shapes[-1]) if shapes else None,
        "instances": len(results[0]),
        "stages": {k: summarize(v) for k, v in stages.items()},
        "load_s": load_s,
    }
    segment_peak = peak_rss()
    if case.prompts:
        out["prompts"] = _prompt_timings(model, results, case, notes)
    out["memory"] = {"peak_rss_bytes": segment_peak, "peak_rss_with_prompts_bytes": peak_rss(),
                     "rss_after_load_bytes": rss_loaded, "baseline_peak_rss_bytes": baseline}
    out["notes"] = notes
    return out


def cold_start_reference(checkpoint: str | os.PathLike[str], reps: int = 3) -> dict[str, Any]:
    """Fresh-interpreter timings of ``import torch; from ultralytics import FastSAM`` and ``FastSAM(checkpoint)``."""
    return cold_start(checkpoint, reps=reps, code=_COLD)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: python -m fastsam_onnx.benchmarks.reference case SPEC.json OUT.json\n"
             "       python -m fastsam_onnx.benchmarks.reference cold CHECKPOINT OUT.json [REPS]")
    if len(argv) < 3 or argv[0] not in ("case", "cold"):
        print(usage, file=sys.stderr)
        return 2
    out = Path(argv[2])
    try:
        if argv[0] == "case":
            data = run_reference(Case.from_dict(json.loads(Path(argv[1]).read_text())))
        else:
            data = cold_start_reference(argv[1], reps=int(argv[3]) if len(argv) > 3 else 3)
    except Exception as e:  # reported to the parent
        import traceback

        traceback.print_exc()
        out.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    out.write_text(json.dumps(data, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
