"""Benchmark harness of the torch-free runtime, and the report shared with the PyTorch reference.

What one *case* (a model, an image, a setting) measures, each case in a child process of its own so that its peak
resident memory is its own (``python -m fastsam_onnx.bench case SPEC.json OUT.json``):

- our pipeline, after ``warmup`` runs, over ``reps`` runs: preprocess, session run, postprocess and end to end
  (``FastSAM.segment`` wall time), as medians and 90th percentiles in milliseconds;
- the bare ``session.run`` of the same graph on the same input tensor (``model.preprocess``);
- prompt selection on one segment-everything result: box, point, text (and, for text, the CLIP image and text
  encoders separately, the text encoder uncached);
- the peak resident set of the child (``VmHWM``; see :func:`peak_rss`), and the Python-heap peak of one postprocess (tracemalloc);
- optionally a cProfile of ``segment`` (top functions by own time).

The reference side (ultralytics ``FastSAM.predict`` in PyTorch) is :mod:`fastsam_onnx.export.bench_reference`; it
runs in a child process of its own too (``python -m fastsam_onnx.export.bench_reference``), so nothing here imports
the torch side. Also here: cold start, installed size of a runtime-only environment, the machine, the goals, and the
report writers (``results.json``, ``results.md``, PNG plots with matplotlib when it is installed).
"""

from __future__ import annotations

import cProfile
import dataclasses
import datetime as _dt
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPORT_VERSION = 1
STAGES = ("preprocess", "inference", "postprocess", "end_to_end")
PROMPTS = ("box", "point", "text", "clip_image", "clip_text")
DEFAULT_TEXT = "a photo of a bus"
MB = 1e6

#: The goals of issue 5 (reported against, never asserted). Thresholds: ratio = reference ÷ ours.
GOALS = {
    "e2e_fp32": ("end to end ≥ 2× faster than ultralytics in PyTorch (fp32 graph)", 2.0),
    "e2e_int8": ("end to end ≥ 3.5× faster than ultralytics in PyTorch (int8 graph)", 3.5),
    "overhead": ("our preprocess + postprocess ≤ 5 % of the bare session.run", 0.05),
    "text": ("text prompt ≥ 3× faster than the reference's (fp32 CLIP)", 3.0),
    "text_int8": ("text prompt ≥ 3× faster than the reference's (int8 CLIP bundle)", 3.0),
    "large_time": ("4512 × 4512 photograph post-processed in ≤ 1 s", 1000.0),
    "large_memory": ("4512 × 4512 photograph: peak resident memory ≤ 1.5 GB", 1.5e9),
}
GOAL_SETTING = "CPU, FastSAM-s shape, imgsz 1024, retina masks, ≥ 40 instances"
MIN_INSTANCES = 40


# ---------------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One benchmark case; serialised to JSON for the child process that runs it.

    model: bundle directory / .onnx file (ours) or checkpoint .pt (reference); image: image file; resize: (w, h)
    to resize the image to with cv2 (INTER_LINEAR) before anything is timed, or None; imgsz: network input side
    (None: the bundle's); retina: retina masks; prompts: ``{"bboxes", "points", "labels", "texts"}`` or None;
    clip: CLIP bundle directory (ours) or CLIP checkpoint file (reference) for the text prompt, or None;
    clip_int8: ours only: an int8 CLIP bundle, timed on the same result too (``prompts["int8_clip"]``);
    profile: also a cProfile of ``segment`` (and of one text prompt); threads: CPU threads of the inference engine
    (ours: ``$FASTSAM_ONNX_THREADS``; reference: ``torch.set_num_threads`` after ultralytics has chosen its own),
    None = the library's own choice; labels: free-form tags for the report (shape, precision, ...).
    """

    name: str
    model: str
    image: str
    imgsz: int | None = None
    retina: bool = True
    reps: int = 10
    warmup: int = 2
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    resize: tuple[int, int] | None = None
    prompts: dict[str, Any] | None = None
    clip: str | None = None
    clip_int8: str | None = None
    bare: bool = True
    profile: bool = False
    providers: str | None = None
    threads: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Case":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if d.get("resize") is not None:
            d["resize"] = tuple(int(v) for v in d["resize"])
        return cls(**d)


def default_prompts(shape: tuple[int, int], text: str = DEFAULT_TEXT) -> dict[str, Any]:
    """Prompts derived from the image size (h, w) alone, so ours and the reference get the same ones:
    the central box (a quarter in from each side), the centre point (label 1) and one text."""
    h, w = shape
    return {
        "bboxes": [[w // 4, h // 4, 3 * w // 4, 3 * h // 4]],
        "points": [[w // 2, h // 2]],
        "labels": [1],
        "texts": [text],
    }


def load_case_image(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """(original image, image to benchmark): the file as OpenCV reads it (BGR uint8), and its resized copy."""
    import cv2

    from .image import read_image

    img = read_image(case.image)
    if case.resize is None:
        return img, img
    return img, cv2.resize(img, tuple(case.resize), interpolation=cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------------------------------ statistics


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


def peak_rss() -> int | None:
    """Peak resident set size of this process so far, in bytes.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory map. (``ru_maxrss`` is
    not used there: across fork + exec it keeps the parent's peak, so a child of a big parent reports the parent's
    figure.) Elsewhere ``ru_maxrss``; None where neither exists.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(v) if sys.platform == "darwin" else int(v) * 1024


def _proc_rss(pid: int) -> int | None:
    """Current resident set of process ``pid`` in bytes, from /proc (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def profile_top(profile: cProfile.Profile, calls: int, n: int = 15) -> list[dict[str, Any]]:
    """The ``n`` functions with the most own time, per call of the profiled code (``calls`` calls)."""
    st = pstats.Stats(profile)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = "~" if file == "~" else f"{Path(file).parent.name}/{Path(file).name}:{line}"
        rows.append({"function": f"{func} ({where})", "calls": nc / calls, "own_ms": tt * 1e3 / calls, "cum_ms": ct * 1e3 / calls})
    rows.sort(key=lambda r: -r["own_ms"])
    return rows[:n]


# ------------------------------------------------------------------------------------------------ our side (child)


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
    try:
        from .clip import CLIP  # noqa: F401
    except ImportError as e:  # the CLIP runtime is not there yet
        notes.append(f"text prompt not timed: the CLIP runtime cannot be imported ({e})")
        return out
    out.update(_text_timings(model, result, case.clip, list(texts), case.reps, notes, case.profile))
    if case.clip_int8:
        out["int8_clip"] = _text_timings(model, result, case.clip_int8, list(texts), case.reps, notes, False)
    return out


def _text_timings(model, result, bundle: str, texts: list[str], reps: int, notes: list[str], profile: bool) -> dict[str, Any]:
    """The text prompt on ``result`` with the CLIP ``bundle``: the whole prompt, then its image and text encoders."""
    from .clip import CLIP
    from .prompts import text_crops

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    clip = CLIP(bundle)
    out["clip_load_s"] = time.perf_counter() - t0
    out["clip_precision"] = clip.precision
    model._clip = clip  # the clip FastSAM.prompt uses (FastSAM(clip=...) would load it the same way)
    clear = lambda: _clear_text_cache(clip)  # noqa: E731
    if not clear():
        notes.append("CLIP text cache could not be cleared: text timings after the first are cached")
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
    out["clip_text"] = summarize(time_calls(lambda: clip.encode_texts(texts), reps, before=clear))
    return out


def run_ours(case: Case) -> dict[str, Any]:
    """Run ``case`` with the torch-free pipeline in this process; returns the figures (see the module doc)."""
    from . import __version__
    from .model import FastSAM, postprocess

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

    for _ in range(case.warmup):
        model.segment(img, **kw)
    stages, result = stage_runs(
        lambda: model.segment(img, **kw), case.reps, lambda r: {k: r.timings[k] for k in STAGES[:3]}
    )
    assert result is not None

    x, lb = model.preprocess(img, model._input_size(case.imgsz))
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
    if case.bare:
        out["bare_run"] = summarize(time_calls(lambda: model.session.run(x), case.reps, warmup=max(1, case.warmup)))

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


# ------------------------------------------------------------------------------------------- children (parent side)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_child(
    argv: Sequence[str], out_json: Path, *, mem_limit: float | None = None, timeout: float | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run ``python ARGV`` (a child that writes its figures to ``out_json``) and return them.

    mem_limit: bytes; the child is killed once its resident set exceeds it (polled every 50 ms), and the result
    says so. Failures come back as ``{"error": ...}`` with the tail of the child's output.
    """
    out_json = Path(out_json)
    log = log or out_json.with_suffix(".log")
    peak_seen = 0
    killed = None
    t0 = time.perf_counter()
    with open(log, "wb") as logf:
        proc = subprocess.Popen([sys.executable, *argv], stdout=logf, stderr=subprocess.STDOUT, env=_child_env())
        while proc.poll() is None:
            rss = _proc_rss(proc.pid)
            if rss:
                peak_seen = max(peak_seen, rss)
            if mem_limit and rss and rss > mem_limit:
                killed = f"killed: resident memory {rss / MB:.0f} MB exceeded the limit of {mem_limit / MB:.0f} MB"
            elif timeout and time.perf_counter() - t0 > timeout:
                killed = f"killed: ran longer than {timeout:.0f} s"
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    if killed:
        return {"error": killed, "peak_rss_seen_bytes": peak_seen, "wall_s": wall, "log_tail": tail}
    if proc.returncode != 0 or not out_json.exists():
        data = json.loads(out_json.read_text()) if out_json.exists() else {}
        return {"error": data.get("error") or f"child exited with status {proc.returncode}", "wall_s": wall, "log_tail": tail}
    data = json.loads(out_json.read_text())
    data["wall_s"] = wall
    data.setdefault("memory", {})["peak_rss_seen_bytes"] = peak_seen
    return data


def run_case(
    case: Case, *, reference: bool = False, workdir: Path | None = None, mem_limit: float | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``case`` in a child process: ours (``fastsam_onnx.bench``) or the reference
    (``fastsam_onnx.export.bench_reference``, which needs the [export] extra)."""
    with tempfile.TemporaryDirectory(prefix="fastsam-bench-", dir=workdir) as tmp:
        spec = Path(tmp) / "case.json"
        spec.write_text(json.dumps(case.to_dict()))
        module = "fastsam_onnx.export.bench_reference" if reference else "fastsam_onnx.bench"
        return run_child(["-m", module, "case", str(spec), str(Path(tmp) / "out.json")], Path(tmp) / "out.json",
                         mem_limit=mem_limit, timeout=timeout)


def reference_available() -> str | None:
    """None when the reference side can run here, else what is missing."""
    missing = [m for m in ("torch", "ultralytics") if importlib.util.find_spec(m) is None]
    if missing:
        return f"the reference needs the [export] extra (missing {', '.join(missing)}): pip install 'fastsam-onnx[export]'"
    return None


def ultralytics_asset(name: str) -> Path | None:
    """A photograph shipped inside the ultralytics package (bus.jpg, zidane.jpg), found without importing it."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "assets" / name
    return p if p.is_file() else None


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


# ------------------------------------------------------------------------------------ cold start, size, machine

_COLD = """
import json, sys, time
t0 = time.perf_counter()
import fastsam_onnx
from fastsam_onnx import FastSAM
t1 = time.perf_counter()
model = FastSAM(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "create_s": t2 - t1}))
"""


def cold_start(bundle: str | os.PathLike[str], reps: int = 3, code: str = _COLD, extra_argv: Sequence[str] = ()) -> dict[str, Any]:
    """Fresh-interpreter timings: ``import fastsam_onnx`` and ``FastSAM(bundle)``, and the whole process
    (interpreter start included), as medians over ``reps`` processes; plus the child's peak resident set."""
    rows = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code + _RSS_TAIL, str(bundle), *extra_argv], capture_output=True,
                              text=True, env=_child_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        row = json.loads(lines[-2])
        row.update(json.loads(lines[-1]))
        row["process_s"] = wall
        rows.append(row)
    out: dict[str, Any] = {k: float(np.median([r[k] for r in rows])) for k in ("import_s", "create_s", "process_s")}
    out["peak_rss_bytes"] = int(np.median([r["peak_rss_bytes"] for r in rows]))
    out["n"] = reps
    out["model"] = str(bundle)
    return out


_RSS_TAIL = """
from fastsam_onnx.bench import peak_rss as _peak_rss
print(json.dumps({"peak_rss_bytes": _peak_rss()}))
"""


def _req_name(req: str) -> str | None:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1) if m else None


def _marker_ok(req: str) -> bool:
    """Whether a requirement string applies here, ignoring extras (base requirements only)."""
    if ";" not in req:
        return True
    marker = req.split(";", 1)[1]
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:
        return True
    try:
        return bool(Marker(marker.strip()).evaluate())
    except Exception:
        return True


def requirement_closure(root: str) -> tuple[list[md.Distribution], list[str]]:
    """The installed distributions ``root`` needs (base requirements, transitively, ``root`` included),
    and the requirement names not installed."""
    seen: dict[str, md.Distribution] = {}
    missing: list[str] = []
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen or key in missing:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(key)
            continue
        seen[key] = dist
        for req in dist.requires or []:
            n = _req_name(req)
            if n and _marker_ok(req):
                todo.append(n)
    return list(seen.values()), sorted(missing)


def _is_editable(dist: md.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def _tree_size(path: Path, seen: set[Path]) -> int:
    total = 0
    for p in path.rglob("*"):
        if "__pycache__" in p.parts or not p.is_file():
            continue
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            total += r.stat().st_size
    return total


def installed_size(root: str = "fastsam-onnx") -> dict[str, Any]:
    """Bytes on disk of ``root``'s base requirement closure: each distribution's installed files
    (importlib.metadata ``files``); an editable install counts its package folders instead."""
    dists, missing = requirement_closure(root)
    seen: set[Path] = set()
    sizes: dict[str, int] = {}
    notes = []
    for dist in dists:
        name = dist.metadata["Name"]
        total = 0
        for f in dist.files or []:
            try:
                p = Path(f.locate()).resolve()
            except OSError:
                continue
            if p in seen or not p.is_file():
                continue
            seen.add(p)
            total += p.stat().st_size
        if _is_editable(dist) and re.sub(r"[-_.]+", "-", name).lower() == "fastsam-onnx":
            for pkg in ("fastsam_onnx", "fastsam_onnx.models", "fastsam_onnx.export"):
                spec = importlib.util.find_spec(pkg)
                for loc in (spec.submodule_search_locations or []) if spec else []:
                    total += _tree_size(Path(loc), seen)
            notes.append(f"{name} is installed editable: its package folders are counted")
        sizes[name] = total
    gpu = sum(v for k, v in sizes.items() if k.lower().startswith(("nvidia-", "triton")))
    return {
        "root": root,
        "total_bytes": sum(sizes.values()),
        "cuda_bytes": gpu,
        "packages": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        "missing": missing,
        "notes": notes,
    }


def _cpuinfo() -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    cores = set()
    phys = core = None
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k == "model name" and "model" not in out:
            out["model"] = v
        elif k == "physical id":
            phys = v
        elif k == "core id":
            core = v
        elif not line.strip():
            if core is not None:
                cores.add((phys, core))
            phys = core = None
    if core is not None:
        cores.add((phys, core))
    if cores:
        out["physical_cores"] = len(cores)
    return out


def _cgroup_cpus() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _gpu() -> str:
    if shutil.which("nvidia-smi"):
        try:
            p = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            if p.returncode == 0 and p.stdout.strip():
                return "; ".join(ln.strip() for ln in p.stdout.strip().splitlines())
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "none"


def machine_info() -> dict[str, Any]:
    """The machine the figures were taken on: CPU, cores, memory, GPU, onnxruntime, Python, OS, load."""
    import cv2
    import onnxruntime as ort

    from .providers import thread_counts

    cpu = _cpuinfo()
    usable = usable_cores()
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    intra, inter = thread_counts()
    return {
        "cpu": cpu.get("model") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "physical_cores": cpu.get("physical_cores"),
        "cgroup_cpus": _cgroup_cpus(),
        "memory_bytes": mem,
        "gpu": _gpu(),
        "onnxruntime": ort.__version__,
        "onnxruntime_device": ort.get_device(),
        "onnxruntime_providers": ort.get_available_providers(),
        "onnxruntime_threads": {"intra_op": intra or "onnxruntime default", "inter_op": inter or "onnxruntime default"},
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "load_average": load_average(),
    }


# ------------------------------------------------------------------------------------------------------------ goals


def _median(d: dict | None, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    if isinstance(d, dict):
        d = d.get("median")
    return float(d) if isinstance(d, (int, float)) else None


def find_case(report: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    return next((c for c in report.get("cases", []) if c["name"] == name), None) if name else None


def reference_of(report: dict[str, Any], case: dict[str, Any] | None) -> dict[str, Any] | None:
    if not case or not case.get("reference"):
        return None
    return report.get("references", {}).get(case["reference"])


def overhead(ours: dict[str, Any] | None) -> float | None:
    """(preprocess + postprocess medians) ÷ bare session.run median."""
    pre, post, bare = _median(ours, "stages", "preprocess"), _median(ours, "stages", "postprocess"), _median(ours, "bare_run")
    return (pre + post) / bare if None not in (pre, post, bare) and bare else None


def speedup(report: dict[str, Any], case: dict[str, Any] | None, *keys: str) -> float | None:
    """reference ÷ ours of the medians at ``keys`` (e.g. "stages", "end_to_end")."""
    ref = reference_of(report, case)
    a, b = _median(ref, *keys), _median(case.get("ours") if case else None, *keys)
    return a / b if a is not None and b else None


def text_speedup(report: dict[str, Any], case: dict[str, Any] | None, clip: str = "fp32") -> float | None:
    """reference ÷ ours of the text prompt's median; clip "int8": our time with the int8 CLIP bundle."""
    if clip == "fp32":
        return speedup(report, case, "prompts", "text")
    a = _median(reference_of(report, case), "prompts", "text")
    b = _median((case or {}).get("ours"), "prompts", "int8_clip", "text")
    return a / b if a is not None and b else None


def _top_note(profile: list[dict] | None) -> str:
    """The top own-time functions of a profile, leaving out the session run itself."""
    if not profile:
        return ""
    rows = [r for r in profile if "onnxruntime" not in r["function"] and not r["function"].startswith("segment (")][:6]
    return "; ".join(f"{r['function']} {r['own_ms']:.1f} ms" for r in rows)


def evaluate_goals(
    report: dict[str, Any], *, headline: str | None, int8: str | None = None, large: str | None = None,
) -> list[dict[str, Any]]:
    """The goals, each {id, goal, target, value, met (True/False/None when not measured), note}.

    headline: the case of the goal setting (FastSAM-s shape, 1024, retina, fp32); int8: its int8 variant;
    large: the 4512 × 4512 case.
    """
    h, q, big = find_case(report, headline), find_case(report, int8), find_case(report, large)
    goals = []

    def add(gid: str, value: float | None, met: bool | None, fmt: str, case: dict | None, note: str = "") -> None:
        text, target = GOALS[gid]
        if case is not None and case.get("ours", {}).get("instances") is not None and gid != "large_memory":
            n = case["ours"]["instances"]
            if n < MIN_INSTANCES:
                note = (note + "; " if note else "") + f"only {n} instances (< {MIN_INSTANCES}) with these weights"
        goals.append({"id": gid, "goal": text, "target": target, "value": value,
                      "measured": fmt.format(value) if value is not None else "not measured",
                      "met": met, "case": case["name"] if case else None, "note": note})

    prof = lambda c: _top_note((c or {}).get("ours", {}).get("profile"))  # noqa: E731
    r = speedup(report, h, "stages", "end_to_end")
    add("e2e_fp32", r, None if r is None else r >= GOALS["e2e_fp32"][1], "{:.2f}×", h,
        "" if r is None or r >= GOALS["e2e_fp32"][1] else "profile (own time): " + prof(h))
    r = speedup(report, q, "stages", "end_to_end")
    add("e2e_int8", r, None if r is None else r >= GOALS["e2e_int8"][1], "{:.2f}×", q,
        ("no int8 case" if q is None else "") if r is None or r >= GOALS["e2e_int8"][1]
        else "profile (own time): " + prof(q))
    o = overhead(h.get("ours") if h else None)
    add("overhead", o * 100 if o is not None else None, None if o is None else o <= GOALS["overhead"][1], "{:.1f} %", h,
        "" if o is None or o <= GOALS["overhead"][1] else "profile (own time): " + prof(h))
    for gid, clip in (("text", "fp32"), ("text_int8", "int8")):
        r = text_speedup(report, h, clip)
        ours_p = (h or {}).get("ours", {}).get("prompts", {})
        ours_p = ours_p.get("int8_clip", {}) if clip == "int8" else ours_p
        note = ""
        if r is not None and r < GOALS[gid][1]:
            note = (f"ours: CLIP image {_fmt_ms(_median(ours_p, 'clip_image'))} + CLIP text "
                    f"{_fmt_ms(_median(ours_p, 'clip_text'))} of {_fmt_ms(_median(ours_p, 'text'))} ms "
                    f"({ours_p.get('text_crops')} crops)")
        add(gid, r, None if r is None else r >= GOALS[gid][1], "{:.2f}×", h, note)
    t = _median((big or {}).get("ours"), "stages", "postprocess")
    add("large_time", t, None if t is None else t <= GOALS["large_time"][1], "{:.0f} ms", big,
        "" if t is None or t <= GOALS["large_time"][1] else "profile (own time): " + prof(big))
    m = ((big or {}).get("ours") or {}).get("memory", {}).get("peak_rss_bytes")
    add("large_memory", m, None if m is None else m <= GOALS["large_memory"][1], "{:.0f} B", big)
    if m is not None:
        goals[-1]["measured"] = f"{m / MB:.0f} MB (whole process)"
    return goals


# ----------------------------------------------------------------------------------------------------------- report


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _fmt_mb(v: float | None) -> str:
    return "—" if v is None else f"{v / MB:,.0f}"


def _fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _mp(d: dict | None, *keys: str) -> str:
    """"median / p90" of the stats at keys."""
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    if not isinstance(d, dict):
        return "—"
    if "median" not in d:
        return "failed" if d.get("error") else "—"
    return f"{_fmt_ms(d['median'])} / {_fmt_ms(d['p90'])}"


def _shape(s) -> str:
    return "—" if not s else "×".join(str(v) for v in s[-2:])


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A Markdown table; the first ``text_columns`` columns left-aligned, the rest (numbers) right-aligned."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine."""
    cores = m.get("usable_cores")
    cg = m.get("cgroup_cpus")
    gpu = m.get("gpu") or "none"
    phys = m.get("physical_cores")
    return (f"{m.get('cpu')}, {cores} usable cores" + (f" ({phys} physical)" if phys else "")
            + (f" (cgroup quota {cg:g})" if cg else "")
            + f", {(m.get('memory_bytes') or 0) / 2**30:.0f} GiB RAM, GPU: {gpu}; onnxruntime {m.get('onnxruntime')} "
            f"({', '.join(m.get('providers_used') or ['CPUExecutionProvider'])}); Python {m.get('python', '').split()[-1]}; "
            f"{m.get('os')}")


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine, end to end, stages, prompts, the large image, cold start, size, goals."""
    m = report.get("machine", {})
    s = report.get("settings", {})
    L = ["# fastsam-onnx benchmarks", ""]
    L.append(f"Created {report.get('created', '?')} · {s.get('reps', '?')} timed runs after {s.get('warmup', '?')} warm-up "
             f"runs per case · conf {s.get('conf', 0.4)}, iou {s.get('iou', 0.9)}, max_det {s.get('max_det', 300)} · "
             "times in milliseconds, median / p90 unless marked.")
    L += ["", "## Machine", ""]
    L.append(f"- {machine_line(m)}")
    if s.get("threads") is not None:
        L.append(f"- CPU threads: {s['threads']} (onnxruntime intra-op threads / torch.set_num_threads)")
    la0, la1 = m.get("load_average"), report.get("load_average_end")
    if la0:
        L.append(f"- load average (1/5/15 min) at the start: {', '.join(f'{v:.2f}' for v in la0)}"
                 + (f"; at the end: {', '.join(f'{v:.2f}' for v in la1)}" if la1 else ""))
    ref = report.get("reference_versions")
    if ref:
        L.append(f"- reference: ultralytics {ref.get('ultralytics')} on torch {ref.get('torch')} "
                 f"({ref.get('torch_threads')} threads), device {ref.get('device', 'cpu')}")

    cases = report.get("cases", [])
    L += ["", "## End to end", ""]
    rows = []
    for c in cases:
        o, r = c.get("ours") or {}, reference_of(report, c) or {}
        e2e, bare = _median(o, "stages", "end_to_end"), _median(o, "bare_run")
        rows.append([
            c["name"], f"{o.get('instances', '—')} / {r.get('instances', '—')}",
            f"{_shape(o.get('input_shape'))} / {_shape(r.get('input_shape'))}",
            _mp(o, "stages", "end_to_end"), _mp(o, "bare_run"),
            _fmt_ratio(e2e / bare if e2e and bare else None),
            _mp(r, "stages", "end_to_end") if not r.get("error") else "failed",
            _fmt_ratio(speedup(report, c, "stages", "end_to_end")),
            f"{_fmt_mb(o.get('memory', {}).get('peak_rss_bytes'))} / {_fmt_mb((r.get('memory') or {}).get('peak_rss_bytes'))}",
        ])
    L += _table(["case", "instances ours / ref", "input ours / ref", "ours end to end", "bare session.run",
                 "ours ÷ bare", "reference end to end", "ref ÷ ours", "peak RSS MB ours / ref"], rows)
    L.append("")
    L.append("Peak RSS: the case's child process (VmHWM) after segmenting, before any prompt (CLIP) was loaded.")

    L += ["", "## Stages (medians)", ""]
    rows = []
    for c in cases:
        o, r = c.get("ours") or {}, reference_of(report, c) or {}
        ov = overhead(o)
        rows.append([c["name"], _fmt_ms(_median(o, "stages", "preprocess")), _fmt_ms(_median(o, "stages", "inference")),
                     _fmt_ms(_median(o, "stages", "postprocess")), "—" if ov is None else f"{ov * 100:.1f} %",
                     _fmt_ms(_median(r, "stages", "preprocess")), _fmt_ms(_median(r, "stages", "inference")),
                     _fmt_ms(_median(r, "stages", "postprocess")), _fmt_ratio(speedup(report, c, "stages", "postprocess"))])
    L += _table(["case", "ours pre", "ours session.run", "ours post", "(pre + post) ÷ bare", "ref pre", "ref inference",
                 "ref post", "post: ref ÷ ours"], rows)

    pcases = [c for c in cases if (c.get("ours") or {}).get("prompts")]
    if pcases:
        L += ["", "## Prompts (on one segment-everything result)", ""]
        rows = []
        for c in pcases:
            op, rp = c["ours"]["prompts"], (reference_of(report, c) or {}).get("prompts") or {}
            cells = [c["name"]]
            for k in PROMPTS:
                cells.append(f"{_mp(op, k)} · {_mp(rp, k)}")
            cells += [_fmt_ratio(speedup(report, c, "prompts", "text")), str(op.get("text_crops", "—")),
                      op.get("clip_precision", "—") if "text" in op else "—"]
            rows.append(cells)
            q = op.get("int8_clip")
            if q:
                rows.append([f"{c['name']} (int8 CLIP)", "—", "—"] + [f"{_mp(q, k)} · {_mp(rp, k)}" for k in PROMPTS[2:]]
                            + [_fmt_ratio(text_speedup(report, c, "int8")), str(q.get("text_crops", "—")), q.get("clip_precision", "—")])
        L += _table(["case", "box ours · ref", "point ours · ref", "text ours · ref", "CLIP image ours · ref",
                     "CLIP text (uncached) ours · ref", "text: ref ÷ ours", "CLIP crops", "our CLIP"], rows)

    big = [c for c in cases if c.get("labels", {}).get("large")]
    if big:
        L += ["", "## A 4512 × 4512 photograph (mask assembly)", ""]
        rows = []
        for c in big:
            o, r = c.get("ours") or {}, reference_of(report, c) or {}
            om, rm = o.get("memory", {}), r.get("memory") or {}
            rows.append([c["name"], f"{o.get('instances', '—')} / {r.get('instances', '—')}",
                         _mp(o, "stages", "postprocess"), _mp(r, "stages", "postprocess") if not r.get("error") else "failed",
                         _fmt_ratio(speedup(report, c, "stages", "postprocess")),
                         f"{_fmt_mb(om.get('peak_rss_bytes'))} / {_fmt_mb(rm.get('peak_rss_bytes') or r.get('peak_rss_seen_bytes'))}",
                         f"{_fmt_mb(om.get('baseline_peak_rss_bytes'))} / {_fmt_mb(rm.get('baseline_peak_rss_bytes'))}",
                         _fmt_mb(o.get("postprocess_traced_peak_bytes"))])
        L += _table(["case", "instances ours / ref", "ours postprocess", "ref postprocess", "ref ÷ ours",
                     "peak RSS MB ours / ref", "peak RSS before the big image MB ours / ref",
                     "our postprocess heap peak MB (tracemalloc)"], rows)
        for c in big:
            r = reference_of(report, c) or {}
            if r.get("error"):
                L.append(f"\nReference on {c['name']}: {r['error']}")

    cs = report.get("cold_start") or {}
    if cs:
        L += ["", "## Cold start (fresh interpreter; medians)", ""]
        rows = []
        for name, v in cs.items():
            if v.get("error"):
                rows.append([name, "failed", "", "", "", ""])
                continue
            rows.append([name, f"{v['import_s'] * 1e3:.0f}", f"{v['create_s'] * 1e3:.0f}", f"{v['process_s'] * 1e3:.0f}",
                         _fmt_mb(v.get("peak_rss_bytes")), str(v.get("n"))])
        L += _table(["model", "import ms", "model creation ms", "whole process ms", "peak RSS MB", "processes"], rows)

    sz = report.get("installed_size") or {}
    if sz:
        L += ["", "## Installed size", ""]
        for label, v in sz.items():
            top = ", ".join(f"{k} {b / MB:.0f}" for k, b in list(v["packages"].items())[:6])
            cuda = f"; of which CUDA/Triton libraries {v['cuda_bytes'] / MB:,.0f} MB" if v.get("cuda_bytes") else ""
            L.append(f"- {label}: **{v['total_bytes'] / MB:,.0f} MB** in {len(v['packages'])} distributions "
                     f"(largest, MB: {top}{cuda})" + (f"; not installed: {', '.join(v['missing'])}" if v.get("missing") else ""))

    goals = report.get("goals") or []
    if goals:
        L += ["", f"## Goals ({GOAL_SETTING})", ""]
        rows = []
        for g in goals:
            status = "not measured" if g["met"] is None else "**met**" if g["met"] else "**missed**"
            rows.append([g["goal"], g["measured"], status, g.get("case") or "—", g.get("note") or ""])
        L += _table(["goal", "measured", "status", "case", "note"], rows, text_columns=5)

    prof = [(c["name"], c["ours"]["profile"]) for c in cases if (c.get("ours") or {}).get("profile")]
    if prof:
        L += ["", "## Where our time goes (cProfile of `segment`, own time per call)", ""]
        for name, rows_ in prof:
            L.append(f"- {name}: " + "; ".join(f"`{r['function']}` {r['own_ms']:.1f} ms" for r in rows_[:8]))

    failed = [(c["name"], side, d["error"]) for c in cases for side, d in (("ours", c.get("ours")), ("reference", reference_of(report, c)))
              if isinstance(d, dict) and d.get("error")]
    notes = list(report.get("notes", [])) + [f"{n} ({side}) failed: {e}" for n, side, e in dict.fromkeys(failed)]
    for c in cases:
        notes += [f"{c['name']}: {n}" for n in (c.get("ours") or {}).get("notes", [])]
    if notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(L) + "\n"


def _save_barh(fig, ax, y, labels: list[str], xlabel: str, title: str, path: Path, written: list[Path]) -> None:
    """Label a horizontal-bar plot (rows ``y`` named ``labels``), save it to ``path``, close it and record it."""
    import matplotlib.pyplot as plt

    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)


def plot_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots: stacked stage bars per case (ours and the reference), and reference ÷ ours ratio bars.
    Returns the files written (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    cases = [c for c in report.get("cases", []) if (c.get("ours") or {}).get("stages")]
    written = []
    if not cases:
        return written
    labels, parts = [], {k: [] for k in ("preprocess", "inference", "postprocess")}
    shown: set[str] = set()
    for c in cases:
        for side, d in (("ours", c["ours"]), ("reference", reference_of(report, c))):
            if side == "reference":
                if not d or not d.get("stages") or c["reference"] in shown:
                    continue  # one bar per reference run, after the first of our variants it serves
                shown.add(c["reference"])
            labels.append(f"{c['name']} · ours" if side == "ours" else f"{c['reference']} (PyTorch fp32)")
            for k in parts:
                parts[k].append(_median(d, "stages", k) or 0.0)
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.32 * len(labels)))
    y = np.arange(len(labels))[::-1]
    left = np.zeros(len(labels))
    colors = {"preprocess": "#4c72b0", "inference": "#dd8452", "postprocess": "#55a868"}
    for k, v in parts.items():
        ax.barh(y, v, left=left, color=colors[k], label=k if k != "inference" else "session.run / inference")
        left += np.asarray(v)
    _save_barh(fig, ax, y, labels, "median ms per image",
               "Stages per case: ours (ONNX Runtime) and the reference (ultralytics, PyTorch)", out_dir / "stages.png", written)

    rows = [(c["name"], speedup(report, c, "stages", "end_to_end"), speedup(report, c, "stages", "postprocess")) for c in cases]
    rows = [r for r in rows if r[1] is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(10, 1.5 + 0.32 * len(rows)))
        y = np.arange(len(rows))[::-1]
        ax.barh(y + 0.2, [r[1] for r in rows], height=0.4, color="#4c72b0", label="end to end")
        ax.barh(y - 0.2, [r[2] or 0 for r in rows], height=0.4, color="#55a868", label="postprocess")
        for x, style in ((1.0, "-"), (GOALS["e2e_fp32"][1], "--"), (GOALS["e2e_int8"][1], ":")):
            ax.axvline(x, color="k", linestyle=style, linewidth=0.8)
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter

        values = [v for r in rows for v in r[1:] if v]
        lo, hi = min(values + [1.0]) / 1.2, max(values + [GOALS["e2e_int8"][1]]) * 1.2
        ax.set_xlim(lo, hi)
        ax.set_xticks([v for v in (0.1, 0.25, 0.5, 1, 2, 3.5, 5, 10, 20, 50, 100) if lo <= v <= hi])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        _save_barh(fig, ax, y, [r[0] for r in rows], "reference ÷ ours (median time; > 1: ours faster; lines at 1, 2 and 3.5)",
                   "Speed-up over ultralytics in PyTorch", out_dir / "ratios.png", written)

    prow = [(c["name"], c["ours"]["prompts"], (reference_of(report, c) or {}).get("prompts") or {})
            for c in cases if c["ours"].get("prompts")]
    if prow:
        kinds = [k for k in ("box", "point", "text") if any(_median(o, k) is not None for _, o, _ in prow)]
        fig, ax = plt.subplots(figsize=(10, 1.5 + 0.5 * len(prow) * max(1, len(kinds))))
        labels, ours_v, ref_v = [], [], []
        for name, o, r in prow:
            for k in kinds:
                labels.append(f"{name} · {k}")
                ours_v.append(_median(o, k) or 0.0)
                ref_v.append(_median(r, k) or 0.0)
        y = np.arange(len(labels))[::-1]
        ax.barh(y + 0.2, ours_v, height=0.4, color="#4c72b0", label="ours")
        ax.barh(y - 0.2, ref_v, height=0.4, color="#c44e52", label="reference")
        ax.set_xscale("symlog", linthresh=1.0)
        _save_barh(fig, ax, y, labels, "median ms per prompt call", "Prompt selection", out_dir / "prompts.png", written)
    return written


def new_report(settings: dict[str, Any]) -> dict[str, Any]:
    """An empty report: version, creation time, machine, settings; cases and references to be filled in."""
    return {
        "version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": settings,
        "cases": [],
        "references": {},
        "notes": [],
    }


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str], plots: bool = True) -> dict[str, Path]:
    """``results.json`` (every figure), ``results.md`` and the PNG plots under ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used = sorted({p for c in report.get("cases", []) for p in (c.get("ours") or {}).get("providers", [])})
    if used:
        report["machine"]["providers_used"] = used
    paths = {"json": out / "results.json", "md": out / "results.md"}
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths["md"].write_text(render_markdown(report))
    if plots:
        for p in plot_report(report, out):
            paths[p.stem] = p
    return paths


# ------------------------------------------------------------------------------------------------------ child entry


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastsam_onnx.bench case SPEC.json OUT.json``: run one case of ours, write its figures."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "case":
        print("usage: python -m fastsam_onnx.bench case SPEC.json OUT.json", file=sys.stderr)
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
