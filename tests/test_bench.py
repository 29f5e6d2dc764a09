"""Smoke runs of the benchmark harness: `fastsam-onnx bench` writes results.json, results.md and PNG plots with
the expected keys. Timings are only checked to be positive numbers, never against a bound."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clip_fixtures import clip_cache, tiny_clip_bundle, tiny_clip_checkpoint  # noqa: F401  (fixtures)

from fastsam_onnx import bench
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
    bundle = export_fastsam(ckpt, root / "tiny-320", imgsz=320, progress=lambda *a: None)
    img = cv2.imread(str(bench.ultralytics_asset("bus.jpg")))
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
    for k in bench.STAGES:
        _positive_stats(ours["stages"][k])
    _positive_stats(ours["bare_run"])
    assert ours["instances"] > 0 and ours["input_shape"] == [1, 3, 320, 320]
    assert ours["memory"]["peak_rss_bytes"] > 0 and ours["postprocess_traced_peak_bytes"] > 0
    for k in bench.PROMPTS:
        d = ours["prompts"][k]
        if "error" in d and k in ("box", "point"):  # a failing prompt is recorded, never hides the other figures
            assert any(n.startswith(f"{k} prompt failed") for n in ours["notes"])
            continue
        _positive_stats(d)
    assert ours["profile"] and ours["prompts"]["text_profile"]

    ref = report["references"][case["reference"]]
    assert "error" not in ref, ref.get("error") + ref.get("log_tail", "")
    for k in bench.STAGES:
        _positive_stats(ref["stages"][k])
    assert ref["instances"] > 0 and ref["memory"]["peak_rss_bytes"] > 0
    for k in ("box", "point", "text", "clip_image", "clip_text"):
        _positive_stats(ref["prompts"][k])
    assert ref["ultralytics"] and ref["torch"]

    assert len(report["cold_start"]) == 2
    for v in report["cold_start"].values():
        assert "error" not in v, v
        assert v["import_s"] > 0 and v["create_s"] > 0 and v["process_s"] > 0
    runtime = report["installed_size"]["runtime only (fastsam-onnx base requirements)"]
    assert runtime["total_bytes"] > 0 and {"numpy", "onnxruntime"} <= set(runtime["packages"])
    assert not {"torch", "ultralytics"} & set(runtime["packages"])
    assert {g["id"] for g in report["goals"]} == set(bench.GOALS)
    assert next(g for g in report["goals"] if g["id"] == "e2e_fp32")["met"] in (True, False)

    md = (out / "results.md").read_text()
    for heading in ("## Machine", "## End to end", "## Stages", "## Prompts", "## Cold start", "## Installed size", "## Goals"):
        assert heading in md
    assert case["name"] in md and md in printed
    for name in ("stages.png", "ratios.png", "prompts.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_readme_section(tmp_path):
    """update_readme.py renders the section from a results.json and replaces only the marked block."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import update_readme

    report = bench.new_report({"reps": 1, "warmup": 0})
    report["cases"].append({"name": "demo", "labels": {"retina": True}, "reference": None,
                            "ours": {"instances": 3, "stages": {k: bench.summarize([1.0, 2.0]) for k in bench.STAGES},
                                     "bare_run": bench.summarize([1.0])}})
    report["goals"] = bench.evaluate_goals(report, headline="demo")
    text = update_readme.section(report)
    assert report["machine"]["cpu"] in text and "| demo |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{update_readme.START}\nold\n{update_readme.END}\n\ntail\n")
    assert update_readme.update(readme, text)
    new = readme.read_text()
    assert "old" not in new and text in new and new.endswith(f"{update_readme.END}\n\ntail\n")
    readme.write_text("# no markers\n")
    assert not update_readme.update(readme, text)


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
    for k in bench.STAGES:
        _positive_stats(ours["stages"][k])
    assert report["cases"][0]["reference"] is None
    assert (out / "stages.png").read_bytes()[:8] == PNG and (out / "results.md").stat().st_size > 0
