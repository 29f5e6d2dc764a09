"""Smoke runs of the benchmark package (``fastsam_onnx.benchmarks``): `fastsam-onnx bench` writes results.json,
results.md and PNG plots with the expected keys; our side runs without torch and matplotlib. Timings are only
checked to be positive numbers, never against a bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip_fixtures import clip_cache, tiny_clip_bundle, tiny_clip_checkpoint  # noqa: F401  (fixtures)
from torchfree import blocker_source

import update_readme  # tools/ (conftest puts it on sys.path)
from fastsam_onnx.benchmarks import cases, figures, report_files, timing
from fastsam_onnx.benchmarks.cases import PROMPTS, STAGES
from fastsam_onnx.cli import main
from fastsam_onnx.models import demo_bundle

ROOT = Path(__file__).resolve().parents[1]
STATS = ("median", "p90", "mean", "min", "max", "n")
PNG = b"\x89PNG\r\n\x1a\n"


def _positive_stats(d) -> None:
    assert set(STATS) <= set(d), d
    assert all(isinstance(d[k], (int, float)) and d[k] > 0 for k in STATS), d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(bundle, checkpoint, small image) of a randomly initialised yolov8n-seg with one class at imgsz 320.

    Its class scores stay below ~0.02, so the smoke run uses conf 0.001 (and max_det 20) to get instances to time;
    the image is square so that no letterbox padding leaves the top-scoring masks empty. The mask-coefficient
    convs are set to constant 1 so that masks fill their boxes (random ones are a few pixels, too small for the
    text prompt's > 100 px crops)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    import cv2
    from ultralytics.nn.tasks import SegmentationModel

    from fastsam_onnx.export.fastsam import export_fastsam

    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    m = SegmentationModel("yolov8n-seg.yaml", nc=1, verbose=False)
    m.names = {0: "object"}
    with torch.no_grad():
        for branch in m.model[-1].cv4:
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(1.0)
    ckpt = root / "tiny-seg.pt"
    torch.save({"model": m.half(), "train_args": {"task": "segment"}}, ckpt)
    bundle = export_fastsam(ckpt, root / "tiny-320", imgsz=320, dynamic=False, progress=lambda *a: None)
    img = cv2.imread(str(cases.ultralytics_asset("bus.jpg")))
    small = root / "bus-small.jpg"
    cv2.imwrite(str(small), cv2.resize(img, (320, 320), interpolation=cv2.INTER_AREA))
    return bundle, ckpt, small


def test_bench_cli_ours_and_reference(tiny, tiny_clip_bundle, tiny_clip_checkpoint, tmp_path, capsys):  # noqa: F811
    bundle, ckpt, image = tiny
    out = tmp_path / "out"
    status = main([
        "bench", "--model", str(bundle), "--image", str(image), "--reps", "2", "--warmup", "1", "--conf", "0.001", "--max-det", "20",
        "--reference", str(ckpt), "--clip", str(tiny_clip_bundle), "--reference-clip", str(tiny_clip_checkpoint),
        "--cold-reps", "1", "--profile", "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert status == 0
    report = json.loads((out / "results.json").read_text())
    assert {"version", "created", "machine", "settings", "cases", "references", "cold_start", "installed_size",
            "goals", "notes"} <= set(report)
    m = report["machine"]
    assert {"cpu", "usable_cores", "memory_bytes", "gpu", "onnxruntime", "onnxruntime_providers", "python", "os"} <= set(m)

    (case,) = report["cases"]
    ours = case["ours"]
    assert "error" not in ours, ours.get("error")
    for k in STAGES:
        _positive_stats(ours["stages"][k])
    _positive_stats(ours["bare_run"])
    assert ours["instances"] > 0 and ours["input_shape"] == [1, 3, 320, 320]
    assert ours["memory"]["peak_rss_bytes"] > 0 and ours["postprocess_traced_peak_bytes"] > 0
    for k in PROMPTS:
        d = ours["prompts"][k]
        if "error" in d and k in ("box", "point"):  # a failing prompt is recorded, never hides the other figures
            assert any(n.startswith(f"{k} prompt failed") for n in ours["notes"])
            continue
        _positive_stats(d)
    assert ours["profile"] and ours["prompts"]["text_profile"]

    ref = report["references"][case["reference"]]
    assert "error" not in ref, ref.get("error") + ref.get("log_tail", "")
    for k in STAGES:
        _positive_stats(ref["stages"][k])
    assert ref["instances"] > 0 and ref["memory"]["peak_rss_bytes"] > 0
    for k in ("box", "point", "text", "clip_image", "clip_text"):
        _positive_stats(ref["prompts"][k])
    assert ref["ultralytics"] and ref["torch"]

    assert len(report["cold_start"]) == 2
    for v in report["cold_start"].values():
        assert "error" not in v, v
        assert v["import_s"] > 0 and v["create_s"] > 0 and v["process_s"] > 0
    runtime = report["installed_size"]["runtime only (fastsam-onnx[cpu]: base requirements and ONNX Runtime)"]
    assert runtime["total_bytes"] > 0 and {"numpy", "onnxruntime"} <= set(runtime["packages"])
    assert not {"torch", "ultralytics"} & set(runtime["packages"])
    assert {g["id"] for g in report["goals"]} == set(figures.GOALS)
    e2e = next(g for g in report["goals"] if g["id"] == "e2e_fp32")
    ratio = figures.speedup(report, case, "stages", "end_to_end")  # reference ÷ ours of this run's medians
    assert e2e["figure"] == pytest.approx(ratio) and ratio > 0
    # 2 timed runs (and a 320-px toy model): the figure is shown, never judged
    assert e2e["met"] is None and e2e["value"] is None and e2e["measured"] == "not measured"
    assert "2 timed runs (the goal needs ≥ 5)" in e2e["note"] and "reference: 2 timed runs" in e2e["note"]

    md = (out / "results.md").read_text()
    for heading in ("## Machine", "## End to end", "## Stages", "## Prompts", "## Cold start", "## Installed size", "## Goals"):
        assert heading in md
    assert case["name"] in md and md in printed
    for name in ("stages.png", "ratios.png", "prompts.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_readme_section(tmp_path):
    """update_readme renders the section from a results.json and replaces only the marked block."""
    report = report_files.new_report({"reps": 1, "warmup": 0})
    report["cases"].append({"name": "demo", "labels": {"retina": True}, "reference": None,
                            "ours": {"instances": 3, "stages": {k: timing.summarize([1.0, 2.0]) for k in STAGES},
                                     "bare_run": timing.summarize([1.0])}})
    report["goals"] = figures.evaluate_goals(report, headline="demo")
    text = update_readme.section(report)
    assert report["machine"]["cpu"] in text and "| demo |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{update_readme.START}\nold\n{update_readme.END}\n\ntail\n")
    assert update_readme.update(readme, text)
    new = readme.read_text()
    assert "old" not in new and text in new and new.endswith(f"{update_readme.END}\n\ntail\n")
    readme.write_text("# no markers\n")
    assert not update_readme.update(readme, text)


def test_size_block_notes_only_what_the_measurement_predates(monkeypatch):
    """An install measured with the [cpu] extra counts onnxruntime on purpose: no "now the [cpu] extra" note;
    one measured without extras that counted it (before onnxruntime moved to [cpu]) gets the note."""
    base = [update_readme._requirement_name(r) for r in update_readme.pyproject()["project"]["dependencies"]]
    packages = {name: 1 << 20 for name in [*base, "onnxruntime"]}
    for extras, noted in ((["cpu"], False), ([], True)):
        size = {"root": "fastsam-onnx", "extras": extras, "total_bytes": 1 << 30, "packages": packages, "notes": []}
        monkeypatch.setattr(update_readme, "_report", lambda size=size: {"created": "2026-12-07", "installed_size": {"x": size}})
        assert ("onnxruntime (now the `[cpu]` extra)" in update_readme.size_block()) is noted


@pytest.mark.skipif(not (demo_bundle() / "fastsam.onnx").is_file(), reason="the demo bundle is not built yet")
def test_bench_demo_bundle_without_reference(tmp_path):
    """The torch-free path alone: the shipped demo bundle, no prompts, no reference."""
    from fastsam_onnx.models import example_image

    out = tmp_path / "out"
    status = main(["bench", "--image", str(example_image()), "--reps", "2", "--warmup", "1", "--no-prompts",
                   "--cold-reps", "0", "--out", str(out)])
    assert status == 0
    report = json.loads((out / "results.json").read_text())
    ours = report["cases"][0]["ours"]
    for k in STAGES:
        _positive_stats(ours["stages"][k])
    assert report["cases"][0]["reference"] is None
    assert (out / "stages.png").read_bytes()[:8] == PNG and (out / "results.md").stat().st_size > 0


# ------------------------------------------------------------------------------------------ the package's shape

RESULTS = ROOT / "benchmarks" / "results"
MAX_LINES = 420  # "about 400 lines" (issue 12)


def test_results_and_readme_regenerate_identically():
    """The committed results.md and the benchmark section of docs/benchmarks.md (tools/update_readme.py; unless the
    page includes benchmarks/results/summary.md instead) are exactly what the writers make of results.json."""
    from fastsam_onnx.benchmarks.report import END, START, render_markdown, section

    report = json.loads((RESULTS / "results.json").read_text())
    assert render_markdown(report) == (RESULTS / "results.md").read_text()
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    if update_readme.SUMMARY_INCLUDE in page and START not in page:  # the page includes benchmarks/results/summary.md
        return  # (tests/test_bench_truth.py checks that file against results.json)
    i, j = page.index(START) + len(START) + 1, page.index(END)
    assert page[i:j] == section(report, results_link="benchmark-results.md"), "stale: run python tools/update_readme.py"


def test_modules_are_small():
    """No module of the runtime, the export stage, the models, the benchmarks or the repository's tools is much
    longer than 400 lines."""
    long = {}
    for folder in ("runtime", "export", "models", "benchmarks", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                long[str(path.relative_to(ROOT))] = n
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
    assert not (ROOT / "runtime" / "bench.py").exists() and not (ROOT / "export" / "bench_reference.py").exists()


def test_benchmark_modules_import_heavy_packages_lazily():
    """Importing every module of the package (reference and plots included) loads no torch, ultralytics or
    matplotlib; only calling the reference side or the plots would."""
    from torchfree import run_blocked

    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")
    assert {"cases", "timing", "reference", "children", "machine", "figures", "report", "plots", "report_files"} <= set(names)
    code = ("_BLOCKED = _BLOCKED + ('matplotlib',)\nimport importlib\n"
            f"for n in {names!r}:\n    importlib.import_module('fastsam_onnx.benchmarks.' + n)\nreport()\n")
    got = run_blocked(code)
    assert got["attempts"] == [] and got["loaded"] == []


_SITECUSTOMIZE = blocker_source(("torch", "torchvision", "ultralytics", "clip", "matplotlib")) + r'''
import atexit, os

@atexit.register
def _log():
    with open(os.environ["BENCH_BLOCK_LOG"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "attempts": _attempts}) + "\n")
'''


def _bench_blocked(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``fastsam-onnx bench ARGV`` in a child whose every Python process (the case and cold-start children
    too, through a sitecustomize on PYTHONPATH) cannot import torch, ultralytics or matplotlib; returns the
    process and one record per Python process of the imports it tried."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    log = tmp_path / f"blocked-{len(list(tmp_path.glob('blocked-*')))}.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "BENCH_BLOCK_LOG": str(log)}
    proc = subprocess.run([sys.executable, "-c", "import sys; from fastsam_onnx.cli import main; sys.exit(main(sys.argv[1:]))",
                           "bench", *argv], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, records


def test_bench_quick_without_torch_or_matplotlib(demo, tmp_path):
    """The base install: a quick bench of our side (prompts with the demo CLIP, a cold start) runs with torch,
    ultralytics and matplotlib unimportable in every process, writes results.json and results.md, shows plain
    progress lines on a non-terminal stderr; asking for the plots or the reference is a one-line error."""
    example = str(demo / "example.jpg")
    out = tmp_path / "out"
    proc, records = _bench_blocked(tmp_path, "--quick", "--image", example, "--out", str(out), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert len(records) >= 3, records  # this process, the case's child, the cold-start child
    assert all(r["attempts"] == [] for r in records), records
    report = json.loads((out / "results.json").read_text())
    ours = report["cases"][0]["ours"]
    assert "error" not in ours, ours
    assert ours["stages"]["end_to_end"]["n"] == 2 and report["settings"]["reps"] == 2
    for k in STAGES:
        _positive_stats(ours["stages"][k])
    assert report["cold_start"] and "error" not in next(iter(report["cold_start"].values()))
    assert (out / "results.md").read_text() in proc.stdout
    assert not list(out.glob("*.png"))
    steps = [line for line in proc.stderr.splitlines() if line.startswith("bench [")]
    assert [s.split("]")[0] for s in steps] == ["bench [1/3", "bench [2/3", "bench [3/3"], proc.stderr
    assert steps[0].startswith("bench [1/3] ours: ") and steps[2] == "bench [3/3] installed size"
    assert "\r" not in proc.stderr  # no bar drawn on a non-terminal

    proc, _ = _bench_blocked(tmp_path, "--quick", "--image", example, "--out", str(tmp_path / "plots"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "the plots need matplotlib" in proc.stderr, proc.stderr
    assert not (tmp_path / "plots").exists()  # refused before measuring anything

    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"not used")
    proc, _ = _bench_blocked(tmp_path, "--quick", "--image", example, "--reference", str(ckpt))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert "the reference side needs the [export] extra" in proc.stderr and "torch" in proc.stderr


def test_bench_quiet_prints_only_the_report(demo, tmp_path):
    """--quiet: nothing on stderr, the Markdown report on stdout."""
    proc, _ = _bench_blocked(tmp_path, "--quick", "--quiet", "--no-prompts", "--cold-reps", "0",
                             "--image", str(demo / "example.jpg"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout.startswith("# fastsam-onnx benchmarks")


def test_bench_progress_bar_on_a_terminal(monkeypatch):
    """On a terminal the steps are a tqdm bar that ends at N/N ("done"); with quiet nothing is drawn."""
    import io

    from fastsam_onnx.cli.bench import _Steps

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for quiet in (False, True):
        err = Tty()
        monkeypatch.setattr(sys, "stderr", err)
        steps = _Steps(2, quiet)
        assert steps.run("ours: x", lambda: 1) == 1 and steps.run("installed size", lambda: 2) == 2
        steps.close()
        text = err.getvalue()
        if quiet:
            assert text == ""
        else:
            assert "\r" in text and "2/2" in text and "done" in text and "bench [" not in text
