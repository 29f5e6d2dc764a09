"""Label Studio with `fastsam-onnx serve` as its ML backend: start-up, pre-annotation and interactive round trips,
timed through Label Studio's own API (what the editor's smart tools call), and a screenshot of the editor.

    python tools/labelstudio_latency.py [--ls-python PATH] [--cases demo,s] [--reps 10] [--screenshot docs/label-studio.png]

``--ls-python``: the Python of a virtualenv with ``label-studio`` (default ``$FASTSAM_LS_PYTHON``; ``.ci/run`` makes
one). Cases: ``demo`` (the demo model on its example image) and ``s`` (the FastSAM-s-shaped test-made bundle at
imgsz 1024, ``tools/bench_models.py``, on ultralytics' bus.jpg). Label Studio is started from a fresh data directory
(first start: migrations), stopped and started again (restart). Prints a Markdown table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from lskit import BRUSH_CONFIG, PASSWORD, USER, keypoint, label_studio, rectangle  # noqa: E402
from serverkit import EXAMPLE, serve_process  # noqa: E402


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median_ms": round(statistics.median(s) * 1e3, 1), "p90_ms": round(s[int(0.9 * (len(s) - 1))] * 1e3, 1),
            "n": len(s)}


def screenshot(url: str, project: int, task: int, out: Path) -> None:
    """Label Studio's editor on ``task`` (its prediction shown), logged in as the test user, 1400 × 900."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        try:
            page = b.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url + "/user/login/")
            page.fill("input[name=email]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{url}/projects/{project}/data?task={task}")
            page.wait_for_selector("canvas", timeout=60000)
            page.wait_for_timeout(5000)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            b.close()


def run_case(ls, name: str, image: Path, model: str | None, extra: dict, reps: int, shot: Path | None) -> dict:
    import cv2

    args = ["--model", model] if model else []
    with serve_process(*args) as (_proc, backend):
        project = ls.project(f"FastSAM {name}", BRUSH_CONFIG)
        task = ls.upload(project, [image])[0]
        ml = ls.connect(project, backend + "/labelstudio", extra=extra)
        t0 = time.perf_counter()
        ls.retrieve_predictions(project)
        pre = time.perf_counter() - t0
        regions = ls.predictions(task["id"])[0]["result"]
        h, w = cv2.imread(str(image)).shape[:2]
        rng = np.random.default_rng(0)
        clicks, boxes, direct = [], [], []
        direct_client = httpx.Client(base_url=backend, timeout=120)  # one connection, as Label Studio keeps its session
        ref = task["data"]["image"]
        created = ls.get(f"/api/projects/{project}")["created_at"].replace("Z", "+00:00")
        uid = f"{project}.{int(datetime.datetime.fromisoformat(created).timestamp())}"  # the project id /setup was given
        body = {"tasks": [{"id": task["id"], "data": {"image": ref}}], "project": uid, "label_config": BRUSH_CONFIG}
        for _ in range(reps):
            x, y = float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.1, 0.9) * h)
            t0 = time.perf_counter()
            ls.interactive(ml, task["id"], [keypoint(x, y, w, h)])
            clicks.append(time.perf_counter() - t0)
            bw, bh = w * 0.3, h * 0.3
            t0 = time.perf_counter()
            ls.interactive(ml, task["id"], [rectangle([x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2], w, h)])
            boxes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()  # the same click straight to the backend, without Label Studio in between
            r = direct_client.post("/labelstudio/predict", json={**body, "params": {"context": {"result": [keypoint(x, y, w, h)]}}})
            direct.append(time.perf_counter() - t0)
            assert r.status_code == 200 and "error" not in r.json()["results"][0], r.text[:300]
        if shot is not None:
            screenshot(ls.url, project, task["id"], shot)
        return {"case": name, "image": f"{image.name} {w}x{h}", "regions": len(regions),
                "retrieve_predictions_s": round(pre, 2), "keypoint": _ms(clicks), "rectangle": _ms(boxes),
                "keypoint_direct": _ms(direct)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ls-python", default=os.environ.get("FASTSAM_LS_PYTHON"))
    ap.add_argument("--cases", default="demo,s")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fastsam-bench-models")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the editor with the demo case's pre-annotations here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.ls_python:
        ap.error("--ls-python (or $FASTSAM_LS_PYTHON) is required")
    report: dict = {"cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ls"
        with label_studio(args.ls_python, data) as ls:
            report["first_start_s"] = round(ls.start_seconds, 1)
        with label_studio(args.ls_python, data) as ls:
            report["restart_s"] = round(ls.start_seconds, 1)
            for name in args.cases.split(","):
                if name == "demo":
                    case = run_case(ls, "demo", EXAMPLE, None, {}, args.reps, args.screenshot)
                else:
                    from bench_models import Models
                    from fastsam_onnx.benchmarks.cases import ultralytics_asset

                    bundle = Models(args.work).bundle("s", 1024, "fp32-dyn")
                    case = run_case(ls, "FastSAM-s-shaped, imgsz 1024", ultralytics_asset("bus.jpg"), str(bundle),
                                    {"imgsz": 1024}, args.reps, None)
                report["cases"].append(case)
                print(json.dumps(case), file=sys.stderr)
    print(f"Label Studio first start {report['first_start_s']} s, restart {report['restart_s']} s\n")
    print("| case | image | regions | retrieve predictions (1 task) | keypoint via LS | rectangle via LS | keypoint direct |")
    print("|---|---|---|---|---|---|---|")
    for c in report["cases"]:
        f = lambda d: f"{d['median_ms']} ms (p90 {d['p90_ms']})"  # noqa: E731
        print(f"| {c['case']} | {c['image']} | {c['regions']} | {c['retrieve_predictions_s']} s | {f(c['keypoint'])} | "
              f"{f(c['rectangle'])} | {f(c['keypoint_direct'])} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
