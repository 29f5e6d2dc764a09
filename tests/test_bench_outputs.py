"""The output-cost benchmark (tools/bench_outputs.py, repository only): its figures and tables, not its timings."""

from __future__ import annotations

import json

import cv2
import pytest

import bench_outputs as outputs  # tools/ (conftest puts it on sys.path)
from fastsam_onnx.models import demo_bundle


def test_figures_and_table_of_a_bundle(tmp_path, capsys):
    out = tmp_path / "o.json"
    assert outputs.main(["--model", str(demo_bundle()), "--image", str(demo_bundle() / "example.jpg"), "--reps", "1", "--json", str(out)]) == 0
    f = json.loads(out.read_text())["cases"]["custom"]
    assert f["instances"] >= 5 and f["input"] == "512x512" and 0 < f["band_pixel_share"] < 0.5
    assert f["polygons_ratio"] > 0 and f["polygons_ms"] > 0 and f["polygons_eps_ms"] > 0
    assert f["edges_ratio"] > 0 and f["edges_in_pass_ms"] < f["postprocess_with_edges_ms"]
    assert f["edges_recomputed_ratio"] > 0
    for loop in ("edges", "polygons"):  # each with its own baseline rounds
        assert f[f"postprocess_{loop}_ms"] > 0
    assert f["segment_edges_ratio"] > 0  # end to end, segment()'s timings
    assert 0 < f["segment_edges_ms"] and 0 < f["segment_postprocess_ms"]
    assert f["proposals_instances"] >= f["instances"] and f["proposals_crops_mb"] > 0
    table = capsys.readouterr().out
    assert "### custom" in table and "≤ 50%" in table and "≤ 20%" in table and "end to end" in table
    with pytest.raises(SystemExit, match="--image"):
        outputs.main(["--model", str(demo_bundle())])


@pytest.mark.slow
def test_demo_case_is_fastsam_s_shaped_with_40_instances(tmp_path):
    bundle, image = outputs.demo_1024(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["dynamic"] is True and manifest["imgsz"] == [1024, 1024]
    img = cv2.imread(str(image))
    assert img.shape == (1024, 1024, 3)
    f = outputs.measure(bundle, image, reps=1)
    assert f["input"] == "1024x1024" and f["instances"] >= 40
    from fastsam_onnx import FastSAM
    from fastsam_onnx.image import load_image

    model = FastSAM(bundle)
    x, _ = model.preprocess(load_image(str(image)), model._input_size(None))
    out0, protos = model.session.run(x)[:2]
    assert out0.shape == (1, 37, 21504) and protos.shape == (1, 32, 256, 256)  # FastSAM-s's at 1024
    assert outputs.demo_1024(tmp_path) == (bundle, image)  # made once, kept
