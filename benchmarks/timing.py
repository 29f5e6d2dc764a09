"""Timing: the primitives both sides share, and our side of a case (run in a child process of its own).

``python -m fastsam_onnx.benchmarks.timing case SPEC.json OUT.json`` runs one :class:`~.cases.Case` with the
torch-free pipeline and writes what it measured:

- our pipeline, after ``warmup`` runs, over ``reps`` runs: preprocess, session run, postprocess and end to end
  (``FastSAM.segment`` wall time), as medians and 90th percentiles in milliseconds;
- the bare ``session.run`` of the same graph on the same input tensor (``model.preprocess``), paired with the
  end-to-end runs round by round (:func:`paired_rounds`): ``bare_run`` is the faster of each round's two runs of
  the graph, ``bare_run_alone`` the bare calls alone, ``paired`` the per-round ratios, so no end-to-end figure
  can fall below its bare one;
- prompt selection on one segment-everything result: box, point, text (and, for text, the CLIP image and text
  encoders separately, the text encoder uncached);
- the peak resident set of the child (``VmHWM``; see :func:`~.children.peak_rss`), and the Python-heap peak of
  one postprocess (tracemalloc);
- optionally a cProfile of ``segment`` (top functions by own time).
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .cases import STAGES, Case, load_case_image
from .children import peak_rss


def summarize(samples_ms: Sequence[float]) -> dict[str, float] | None:
    """Milliseconds → {median, p90, mean, min, max, n}; None for no samples."""
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        return None
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def time_calls(fn: Callable[[], Any], reps: int, warmup: int = 1, before: Callable[[], Any] | None = None) -> list[float]:
    """Wall time of ``fn()`` in ms over ``reps`` calls after ``warmup`` untimed ones; ``before()`` runs
    untimed before every call (e.g. to clear a cache)."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    out = []
    for _ in range(reps):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def stage_runs(call: Callable[[], Any], reps: int, stage_ms: Callable[[Any], dict[str, float]]) -> tuple[dict[str, list[float]], Any]:
    """Call ``call`` ``reps`` times: per-stage samples in ms (``stage_ms(result)`` plus the measured
    ``end_to_end``) and the last result. Shared by our side and the reference's."""
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    result = None
    for _ in range(reps):
        t = time.perf_counter()
        result = call()
        stages["end_to_end"].append((time.perf_counter() - t) * 1e3)
        for k, v in stage_ms(result).items():
            stages[k].append(v)
    return stages, result


def paired_rounds(segment: Callable[[], Any], bare: Callable[[], Any], reps: int,
                  stage_ms: Callable[[Any], dict[str, float]]) -> tuple[dict[str, list[float]], dict[str, list[float]], Any]:
    """``reps`` rounds, each timing one bare ``session.run`` and one whole ``segment`` call on the same input (the
    order alternates between rounds, so neither always runs on a warmer cache or a quieter machine).

    Returns (stages, paired, last result): ``stages`` as :func:`stage_runs`; ``paired`` per round:
    ``bare_alone`` (the bare call), ``bare`` (the faster of the round's two runs of the graph on that tensor: the
    bare call and the one inside ``segment``, whose ``inference`` stage is the same ``session.run``, so the slower
    one's excess is noise, not work), ``e2e_over_bare`` and ``overhead`` ((preprocess + postprocess) ÷ ``bare``).
    By construction ``end_to_end ≥ inference ≥ bare`` in every round, so every order statistic of the end-to-end
    samples (median, p90, min, max) is at least the same statistic of the bare ones."""
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    paired: dict[str, list[float]] = {k: [] for k in ("bare_alone", "bare", "e2e_over_bare", "overhead")}
    result = None

    def timed_bare() -> float:
        t = time.perf_counter()
        bare()
        return (time.perf_counter() - t) * 1e3

    for i in range(reps):
        b = timed_bare() if i % 2 == 0 else None
        t = time.perf_counter()
        result = segment()
        e = (time.perf_counter() - t) * 1e3
        if b is None:
            b = timed_bare()
        st = stage_ms(result)
        stages["end_to_end"].append(e)
        for k, v in st.items():
            stages[k].append(v)
        floor = min(b, st["inference"])
        paired["bare_alone"].append(b)
        paired["bare"].append(floor)
        paired["e2e_over_bare"].append(e / floor)
        paired["overhead"].append((st["preprocess"] + st["postprocess"]) / floor)
    return stages, paired, result


def profile_top(profile: cProfile.Profile, calls: int, n: int = 15) -> list[dict[str, Any]]:
    """The ``n`` functions with the most own time, per call of the profiled code (``calls`` calls)."""
    st = pstats.Stats(profile)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = "~" if file == "~" else f"{Path(file).parent.name}/{Path(file).name}:{line}"
        rows.append({"function": f"{func} ({where})", "calls": nc / calls, "own_ms": tt * 1e3 / calls, "cum_ms": ct * 1e3 / calls})
    rows.sort(key=lambda r: -r["own_ms"])
    return rows[:n]


# ------------------------------------------------------------------------------------------------------ our side


def _clear_text_cache(clip) -> bool:
    cache = getattr(clip, "_text_cache", None)
    if isinstance(cache, dict):
        cache.clear()
        return True
    return False


def timed_prompt(out: dict[str, Any], key: str, call: Callable[[], Any], reps: int, notes: list[str],
                 before: Callable[[], Any] | None = None) -> None:
    """``out[key]`` = timings of ``call()`` and ``out[key + "_selected"]`` = how many instances it kept; a prompt
    that raises is recorded as ``{"error": ...}`` (and a note) so the other measurements go on."""
    try:
        out[key] = summarize(time_calls(call, reps, before=before))
        if before:
            before()
        out[f"{key}_selected"] = len(call())
    except Exception as e:
        out[key] = {"error": f"{type(e).__name__}: {e}"}
        notes.append(f"{key} prompt failed: {type(e).__name__}: {e}")


def box_point_timings(select: Callable[..., Any], prompts: dict[str, Any], reps: int, notes: list[str]) -> dict[str, Any]:
    """Timings of the box and the point prompts of ``prompts`` through ``select(bboxes=...)`` and
    ``select(points=..., labels=...)`` — our ``FastSAM.prompt`` or the reference's; filled by :func:`timed_prompt`."""
    out: dict[str, Any] = {}
    if prompts.get("bboxes") is not None:
        timed_prompt(out, "box", lambda: select(bboxes=prompts["bboxes"]), reps, notes)
    if prompts.get("points") is not None:
        timed_prompt(out, "point", lambda: select(points=prompts["points"], labels=prompts.get("labels")), reps, notes)
    return out


def _prompt_timings(model, result, case: Case, notes: list[str]) -> dict[str, Any]:
    """Box, point and text prompt selection on one segment-everything ``result``."""
    p = case.prompts or {}
    out = box_point_timings(lambda **kw: model.prompt(result, **kw), p, case.reps, notes)
    texts = p.get("texts")
    if texts is None:
        return out
    if case.clip is None:
        notes.append("text prompt not timed: no CLIP bundle given")
        return out
    out.update(_text_timings(model, result, case.clip, list(texts), case.reps, notes, case.profile))
    if case.clip_int8:
        out["int8_clip"] = _text_timings(model, result, case.clip_int8, list(texts), case.reps, notes, False)
    return out


def _text_timings(model, result, bundle: str, texts: list[str], reps: int, notes: list[str], profile: bool) -> dict[str, Any]:
    """The text prompt on ``result`` with the CLIP ``bundle``: the whole prompt, then its image and text encoders."""
    from fastsam_onnx.clip import CLIP
    from fastsam_onnx.clip.crops import text_crops

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    clip = CLIP(bundle)
    out["clip_load_s"] = time.perf_counter() - t0
    out["clip_precision"] = clip.precision
    model._clip = clip  # the clip FastSAM.prompt uses (FastSAM(clip=...) would load it the same way)
    clear_text = lambda: _clear_text_cache(clip)  # noqa: E731
    if not clear_text():
        notes.append("CLIP text cache could not be cleared: text timings after the first are cached")

    def clear() -> None:  # every timed text prompt is the first on its result, as the reference's always is
        clear_text()
        result.clear_clip_cache()

    timed_prompt(out, "text", lambda: model.prompt(result, texts=texts), reps, notes, before=clear)
    if profile and "error" not in out["text"]:
        prof = cProfile.Profile()
        clear()
        prof.enable()
        model.prompt(result, texts=texts)
        prof.disable()
        out["text_profile"] = profile_top(prof, 1, n=10)
    images, keep = text_crops(result.orig_img, result.boxes, result.original_crops())
    out["text_crops"] = len(images)
    if images:
        out["clip_image"] = summarize(time_calls(lambda: clip.encode_images(images), reps))
    out["clip_text"] = summarize(time_calls(lambda: clip.encode_texts(texts), reps, before=clear_text))
    return out


def run_ours(case: Case) -> dict[str, Any]:
    """Run ``case`` with the torch-free pipeline in this process; returns the figures (see the module doc)."""
    from fastsam_onnx import __version__
    from fastsam_onnx.model import FastSAM, postprocess

    notes: list[str] = []
    if case.threads:
        os.environ["FASTSAM_ONNX_THREADS"] = str(int(case.threads))
    t0 = time.perf_counter()
    model = FastSAM(case.model, providers=case.providers)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss()
    orig, img = load_case_image(case)
    kw = dict(imgsz=case.imgsz, conf=case.conf, iou=case.iou, max_det=case.max_det, retina_masks=case.retina)
    baseline = None
    if case.resize is not None:  # the model warmed up on the photograph itself: what the big image adds
        model.segment(orig, **kw)
        baseline = peak_rss()

    x, lb = model.preprocess(img, model._input_size(case.imgsz))
    for _ in range(case.warmup):
        model.segment(img, **kw)
        if case.bare:
            model.session.run(x)
    segment = lambda: model.segment(img, **kw)  # noqa: E731
    stage_ms = lambda r: {k: r.timings[k] for k in STAGES[:3]}  # noqa: E731
    paired = None
    if case.bare:  # bare session.run and segment alternate within each round (see paired_rounds)
        stages, paired, result = paired_rounds(segment, lambda: model.session.run(x), case.reps, stage_ms)
    else:
        stages, result = stage_runs(segment, case.reps, stage_ms)
    assert result is not None

    out: dict[str, Any] = {
        "side": "ours",
        "version": __version__,
        "providers": model.providers,
        "graph": {"file": str(model.onnx_path), "input_dtype": str(model.session.input_dtype), "dynamic": model.dynamic,
                  "precision": model.manifest.get("precision", case.labels.get("precision")),
                  "created": model.manifest.get("created"), "sha256": (model.manifest.get("sha256") or {}).get("onnx")},
        "image_shape": list(img.shape[:2]),
        "input_shape": list(x.shape),
        "instances": len(result),
        "stages": {k: summarize(v) for k, v in stages.items()},
        "load_s": load_s,
        "threads": case.threads or "onnxruntime default",
    }
    if paired is not None:
        out["bare_run"] = {**summarize(paired["bare"]), "paired": True}  # type: ignore[dict-item]
        out["bare_run_alone"] = summarize(paired["bare_alone"])
        out["paired"] = {"e2e_over_bare": summarize(paired["e2e_over_bare"]), "overhead": summarize(paired["overhead"])}
        out["rounds"] = {"end_to_end": stages["end_to_end"], "inference": stages["inference"],  # ms, round by round
                         "bare": paired["bare"], "bare_alone": paired["bare_alone"]}

    # Python-heap peak of one postprocess (numpy and OpenCV outputs are traced; onnxruntime's arena is not)
    output0, protos = model.session.run(x)[:2]
    tracemalloc.start()
    postprocess(output0[0], protos[0], lb, conf=case.conf, iou=case.iou, max_det=case.max_det, retina_masks=case.retina)
    out["postprocess_traced_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del output0, protos

    segment_peak = peak_rss()
    if case.prompts:
        out["prompts"] = _prompt_timings(model, result, case, notes)
    if case.profile:
        prof = cProfile.Profile()
        n = max(2, min(case.reps, 5))
        prof.enable()
        for _ in range(n):
            model.segment(img, **kw)
        prof.disable()
        out["profile"] = profile_top(prof, n)
    out["memory"] = {"peak_rss_bytes": segment_peak, "peak_rss_with_prompts_bytes": peak_rss(),
                     "rss_after_load_bytes": rss_loaded, "baseline_peak_rss_bytes": baseline}
    out["notes"] = notes
    return out


# ------------------------------------------------------------------------------------------------------ child entry


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastsam_onnx.benchmarks.timing case SPEC.json OUT.json``: run one case of ours, write its figures."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "case":
        print("usage: python -m fastsam_onnx.benchmarks.timing case SPEC.json OUT.json", file=sys.stderr)
        return 2
    case = Case.from_dict(json.loads(Path(argv[1]).read_text()))
    try:
        data = run_ours(case)
    except Exception as e:  # reported to the parent, which carries on with the other cases
        import traceback

        traceback.print_exc()
        Path(argv[2]).write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    Path(argv[2]).write_text(json.dumps(data, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
