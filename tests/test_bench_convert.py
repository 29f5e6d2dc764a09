"""The conversion benchmark's output (benchmarks/convert.py), on the demo models: its structure only, never its
figures (the figures are measured by running the benchmark, see README "Converting without PyTorch")."""

from __future__ import annotations

import json

from fastsam_onnx.benchmarks import convert
from fastsam_onnx.models import demo_bundle, demo_clip_bundle


def test_report_structure(tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["--fastsam-s", str(demo_bundle() / "fastsam-demo.pt"), "--clip", str(demo_clip_bundle() / "clip-demo.pt"),
            "--only", "fastsam-s", "clip-vit-b-32", "--imgsz", "256", "--no-torch", "--out", str(out)]
    assert convert.main(args) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "conversion" and report["imgsz"] == 256 and "cpu" in report["machine"]
    assert [c["name"] for c in report["cases"]] == ["fastsam-s", "clip-vit-b-32"]
    for case in report["cases"]:
        native = case["native"]
        assert "error" not in native, native
        assert {"seconds", "wall_s", "peak_rss_bytes", "bundle_bytes"} <= set(native)
        assert 0 < native["seconds"] < native["wall_s"] and native["peak_rss_bytes"] > 50e6 and native["bundle_bytes"] > 1e6
        assert case["torch"] is None and case["weights_bytes"] > 1e6
        assert set(case["goals"]) == set(convert.GOALS[case["name"]])
        assert all({"bound", "value", "met"} == set(g) for g in case["goals"].values())
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["case", "converter"] and len(lines) == 4
    assert lines[2].startswith("fastsam-s") and " native " in lines[2]


def test_a_failed_conversion_is_reported(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = convert.measure("fastsam-s", "native", bad, 256, tmp_path, None)
    assert "BadModelError" in r["error"] and r["seconds"] >= 0
    report = {"cases": [{"name": "fastsam-s", "native": r, "torch": None, "goals": convert.goals("fastsam-s", r)}]}
    assert report["cases"][0]["goals"]["seconds"]["met"] is False
    assert "error: BadModelError" in convert.table(report)[1]
