"""The 12-megapixel case: what every output of a phone-sized photo costs against the ``segment`` call that made it.

A 4032 × 3024 photograph is built from the real photographs the tests use (:func:`make_photo`: bus.jpg on the
left, zidane.jpg and its mirror image on the right, resized with ``INTER_CUBIC``). In one process, ``reps``
rounds each run ``FastSAM.segment`` on the decoded image (BGR array; the JPEG decode is not in it) and then every
output on that round's result, so a slower or faster spell of the machine hits both sides; each output's figure
is the median over rounds of its time divided by that round's ``segment`` time:

- ``to_json``: :meth:`Result.to_json` + ``json.dumps`` (COCO's compressed RLE strings, the default);
- ``coco_file``: ``write_annotation(..., "coco")``, what ``segment --json`` writes (atomic file write included);
- ``overlay``: :func:`~fastsam_onnx.outputs.draw.draw_overlay` (the drawing; encoding it as an image file is
  reported apart, ``overlay_jpeg``/``overlay_png``, as it is the codec's time, not ours);
- ``polygons``: :meth:`Result.polygons` (every traced vertex), ``labelme`` and ``yolo``: the two polygon file
  formats as ``write_annotation`` makes them (``epsilon`` 0.001, contour tracing over every crop).

In child processes of their own (so each peak is its own): the peak resident set (``VmHWM``) of ``segment``
alone and of ``segment`` + writing every output file the CLI writes (:data:`WRITTEN`: the JSON, the COCO file,
the overlay as a JPEG file, labelme, YOLO-seg; ``peak_rss``). With ``server=True`` a ``fastsam-onnx
serve`` child on 127.0.0.1 answers an uncached and a cached ``/v1/segment`` of the photo (multipart upload, the
client's wall time), ``/v1/prompt`` with one box (one instance back; p50 over ``5 × reps``) and with no prompt
(every instance back).

Goals (:data:`GOALS`) are judged only on a run with at least :data:`MIN_REPS` rounds and :data:`MIN_INSTANCES`
instances; otherwise they say "not measured". Timings are never pass/fail tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .figures import apart

PHOTO_SIZE = (4032, 3024)  # width, height: a 12-megapixel phone photo
#: output → its budget as a share of the ``segment`` call (server rows: of the uncached request; p50: ms)
GOALS: dict[str, tuple[str, float]] = {
    "to_json": ("ratio", 0.20), "coco_file": ("ratio", 0.20), "overlay": ("ratio", 0.20),
    "polygons": ("ratio", 0.60), "labelme": ("ratio", 0.60), "yolo": ("ratio", 0.60),
    "server_cached_segment": ("ratio", 0.25), "server_prompt_all": ("ratio", 0.25),
    "server_prompt_one_p50_ms": ("ms", 30.0), "peak_rss": ("ratio", 0.10),
}
MIN_REPS = 5
MIN_INSTANCES = 100
OUTPUTS = ("to_json", "coco_file", "overlay", "polygons", "labelme", "yolo")
WRITTEN = ("to_json", "coco_file", "overlay_file", "labelme", "yolo")


def make_photo(bus: str | os.PathLike[str], zidane: str | os.PathLike[str], size: tuple[int, int] = PHOTO_SIZE) -> np.ndarray:
    """(h, w, 3) BGR uint8 photograph of ``size`` (w, h): bus.jpg over the left half, zidane.jpg over the top right
    quarter and its mirror image over the bottom right one (each resized to its part, ``INTER_CUBIC``)."""
    import cv2

    w, h = size
    a, b = cv2.imread(str(bus)), cv2.imread(str(zidane))
    if a is None or b is None:
        raise FileNotFoundError(f"cannot read {bus} or {zidane}")
    left = cv2.resize(a, (w // 2, h), interpolation=cv2.INTER_CUBIC)
    top = cv2.resize(b, (w - w // 2, h // 2), interpolation=cv2.INTER_CUBIC)
    bottom = cv2.resize(cv2.flip(b, 1), (w - w // 2, h - h // 2), interpolation=cv2.INTER_CUBIC)
    return np.hstack([left, np.vstack([top, bottom])])


def output_calls(result: Any, work: Path) -> dict[str, Callable[[], Any]]:
    """Each output of :data:`OUTPUTS` (and the overlay's encodings) as a no-argument call on ``result``."""
    import cv2

    from fastsam_onnx.fileio import atomic_imwrite
    from fastsam_onnx.outputs.draw import draw_overlay
    from fastsam_onnx.outputs.formats import write_annotation

    image = str(work / "photo.jpg")
    return {
        "to_json": lambda: json.dumps(result.to_json(image)),
        "coco_file": lambda: write_annotation(work / "r.json", result, "coco", image_path=image),
        "overlay": lambda: draw_overlay(result),
        "polygons": lambda: result.polygons(),
        "labelme": lambda: write_annotation(work / "r.labelme.json", result, "labelme", image_path=image),
        "yolo": lambda: write_annotation(work / "r.txt", result, "yolo", image_path=image),
        "overlay_jpeg": lambda: cv2.imencode(".jpg", draw_overlay(result))[1],
        "overlay_file": lambda: atomic_imwrite(work / "overlay.jpg", draw_overlay(result)),
        "overlay_png": lambda: cv2.imencode(".png", draw_overlay(result))[1],
    }


def _median_ratio(xs: list[float], base: list[float]) -> float:
    return float(statistics.median(x / b for x, b in zip(xs, base)))


def time_outputs(model: Any, photo: np.ndarray, reps: int, **segment_kwargs: Any) -> dict[str, Any]:
    """``reps`` rounds (after one untimed) of ``segment`` then every output on its result: medians in ms and the
    medians of the per-round ratios to ``segment``; the instance count and the crops' area over the image's."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fastsam-onnx-12mp-") as tmp:
        work = Path(tmp)
        times: dict[str, list[float]] = {"segment": []}
        for rnd in range(reps + 1):
            t = time.perf_counter()
            result = model.segment(photo, **segment_kwargs)
            seg = (time.perf_counter() - t) * 1e3
            calls = output_calls(result, work)
            took = {}
            for name, fn in calls.items():
                if name == "overlay_file":  # memory only (the JPEG encode is timed as overlay_jpeg)
                    continue
                t = time.perf_counter()
                fn()
                took[name] = (time.perf_counter() - t) * 1e3
            if rnd:  # the first round warms the caches and the thread pool
                times["segment"].append(seg)
                for name, ms in took.items():
                    times.setdefault(name, []).append(ms)
        h, w = photo.shape[:2]
        out["instances"] = len(result)
        out["crop_area_over_image"] = round(sum(c.mask.size for c in result.original_crops()) / (h * w), 2)
        out["stages_ms"] = {k: round(v, 1) for k, v in result.timings.items()}
    out["reps"] = reps
    out["median_ms"] = {k: round(statistics.median(v), 1) for k, v in times.items()}
    out["ratio"] = {k: round(_median_ratio(v, times["segment"]), 3) for k, v in times.items() if k != "segment"}
    return out


_PEAK_CHILD = r"""
import json, sys, tempfile
from pathlib import Path
import cv2
from fastsam_onnx import FastSAM
from fastsam_onnx.benchmarks.children import peak_rss
from fastsam_onnx.benchmarks.large_photo import WRITTEN, output_calls
model_dir, photo, kwargs, what = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
model = FastSAM(model_dir)
result = model.segment(cv2.imread(photo), **kwargs)
if what == "outputs":
    with tempfile.TemporaryDirectory() as tmp:
        calls = output_calls(result, Path(tmp))
        for name in WRITTEN:
            calls[name]()
print(json.dumps({"peak_rss": peak_rss(), "instances": len(result)}))
"""


def peak_memory(model_dir: str, photo_path: str, segment_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Peak resident set (bytes) of a child that runs ``segment`` alone, and of one that then writes every output."""
    out: dict[str, Any] = {}
    for what in ("segment", "outputs"):
        proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, model_dir, photo_path, json.dumps(segment_kwargs), what],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError(f"peak-memory child ({what}) failed: {proc.stderr.strip().splitlines()[-1:]}")
        out[what] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss"]
    out["ratio"] = round(out["outputs"] / out["segment"] - 1, 3) if out["segment"] else None
    return out


def server_timings(model_dir: str, photo_path: str, reps: int, segment_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A ``fastsam-onnx serve`` child on 127.0.0.1: uncached and cached ``/v1/segment`` of the photo, and
    ``/v1/prompt`` returning one instance (a box) and every instance (no prompt); client wall times in ms."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "fastsam_onnx", "serve", "--model", model_dir, "--port", str(port), "--quiet",
           "--cache-mb", "2048", "--timeout", "600"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    data = Path(photo_path).read_bytes()
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in segment_kwargs.items() if k != "retina_masks"}
    form["retina"] = str(segment_kwargs.get("retina_masks", True)).lower()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
            for _ in range(600):
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {proc.stderr.read()[-500:]}")
                time.sleep(0.1)

            def post(conf: str) -> tuple[float, dict[str, Any]]:
                t = time.perf_counter()
                r = c.post("/v1/segment", files={"image": ("photo.jpg", data)}, data={**form, "conf": conf})
                r.raise_for_status()
                return (time.perf_counter() - t) * 1e3, r.json()

            def prompt(body: dict[str, Any]) -> tuple[float, int]:
                t = time.perf_counter()
                r = c.post("/v1/prompt", json=body)
                r.raise_for_status()
                return (time.perf_counter() - t) * 1e3, len(r.json()["instances"])

            base = float(segment_kwargs.get("conf", 0.4))
            uncached, cached, one, every = [], [], [], []
            for i in range(reps + 1):
                conf = f"{base + 1e-6 * (i + 1):.7f}"  # a new conf: the cache cannot answer
                ms, body = post(conf)
                ms_hit, hit = post(conf)  # the same request again: answered from the cache
                if not hit.get("cached"):
                    raise RuntimeError("the second /v1/segment was not answered from the cache")
                iid, inst = body["image_id"], body["instances"]
                box = inst[len(inst) // 2]["box"] if inst else [0, 0, 10, 10]
                one_ms = [prompt({"image_id": iid, "boxes": [box]}) for _ in range(5)]
                all_ms, n_all = prompt({"image_id": iid})
                if i:
                    uncached.append(ms)
                    cached.append(ms_hit)
                    one += [m for m, _ in one_ms]
                    every.append(all_ms)
            return {
                "instances": len(inst), "prompt_all_instances": n_all,
                "uncached_segment_ms": round(statistics.median(uncached), 1),
                "cached_segment_ms": round(statistics.median(cached), 1),
                "prompt_one_p50_ms": round(statistics.median(one), 1),
                "prompt_all_ms": round(statistics.median(every), 1),
                "ratio": {"server_cached_segment": round(_median_ratio(cached, uncached), 3),
                          "server_prompt_all": round(_median_ratio(every, uncached), 3)},
            }
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def judge(case: dict[str, Any]) -> dict[str, str]:
    """Each goal of :data:`GOALS` → "met", "missed" or "not measured" (with why) for a measured case."""
    reps, n = case.get("outputs", {}).get("reps", 0), case.get("outputs", {}).get("instances", 0)
    figures: dict[str, float | None] = dict(case.get("outputs", {}).get("ratio", {}))
    server = case.get("server") or {}
    figures.update(server.get("ratio", {}))
    figures["server_prompt_one_p50_ms"] = server.get("prompt_one_p50_ms")
    figures["peak_rss"] = (case.get("memory") or {}).get("ratio")
    verdicts = {}
    for name, (kind, bound) in GOALS.items():
        value = figures.get(name)
        if value is None:
            verdicts[name] = "not measured (not run)"
        elif reps < MIN_REPS or n < MIN_INSTANCES:
            verdicts[name] = f"not measured ({reps} rounds, {n} instances: a goal needs >= {MIN_REPS} and >= {MIN_INSTANCES})"
        else:
            verdicts[name] = "met" if value <= bound else "missed"
    return verdicts


def share(value: float, goal: str | None = None) -> str:
    """``value`` (a fraction) as a whole percentage, with the decimals that show a ``goal`` (of :data:`GOALS`)
    missed rather than met (0.204 against <= 20 %: "20.4%", not "20%"): :func:`.figures.apart`."""
    bound = GOALS[goal][1] if goal in GOALS else None
    return apart(value, value if bound is None else bound, "{:.0%}", bound is not None and value > bound)


def markdown(report: dict[str, Any]) -> str:
    """The report's tables: per case, each output's median ms, its share of ``segment`` and the goal's verdict."""
    lines = [f"Measured {report['date']} by `python tools/bench_large_photo.py --reps {report.get('reps', '')}` on: "
             f"{report.get('machine_line', '')}.", ""]
    for case in report["cases"]:
        o = case["outputs"]
        lines += [f"### {case['name']}: {o['instances']} instances, box crops {o['crop_area_over_image']} x the image, "
                  f"{o['reps']} rounds", "",
                  f"`segment` (the decoded {PHOTO_SIZE[0]} x {PHOTO_SIZE[1]} array): median {o['median_ms']['segment']} ms "
                  f"(stages of the last round: {o['stages_ms']})", "",
                  "| output | median ms | share of `segment` | goal | verdict |", "|---|---:|---:|---:|---|"]
        verdicts = case["verdicts"]
        for name in (*OUTPUTS, "overlay_jpeg", "overlay_png"):
            goal = GOALS.get(name)
            lines.append(f"| {name} | {o['median_ms'][name]} | {share(o['ratio'][name], name)} | "
                         f"{f'<= {goal[1]:.0%}' if goal else '(codec)'} | {verdicts.get(name, '')} |")
        if case.get("server"):
            s = case["server"]
            lines += ["", f"Server (`fastsam-onnx serve` child, multipart upload of the JPEG): uncached `/v1/segment` "
                      f"{s['uncached_segment_ms']} ms, cached {s['cached_segment_ms']} ms "
                      f"({share(s['ratio']['server_cached_segment'], 'server_cached_segment')}, goal <= 25 %: {verdicts['server_cached_segment']}); "
                      f"`/v1/prompt` one instance p50 {s['prompt_one_p50_ms']} ms (goal <= 30 ms: "
                      f"{verdicts['server_prompt_one_p50_ms']}), all {s['prompt_all_instances']} instances "
                      f"{s['prompt_all_ms']} ms ({share(s['ratio']['server_prompt_all'], 'server_prompt_all')}, goal <= 25 %: {verdicts['server_prompt_all']})."]
        if case.get("memory"):
            m = case["memory"]
            lines += ["", f"Peak RSS: `segment` alone {m['segment'] / 2**20:.0f} MiB, with every output written "
                      f"{m['outputs'] / 2**20:.0f} MiB (+{share(m['ratio'], 'peak_rss')}, goal <= +10 %: {verdicts['peak_rss']})."]
        lines.append("")
    return "\n".join(lines)
