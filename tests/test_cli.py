"""``fastsam-onnx segment``: JSON (COCO RLE that pycocotools decodes), overlay, exit statuses."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main

mask_utils = pytest.importorskip("pycocotools.mask")


def test_segment_writes_json_and_overlay(demo, tmp_path, capsys):
    image = demo / "example.jpg"
    status = main(["segment", str(image), "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "o.png")])
    assert status == 0
    data = json.loads((tmp_path / "r.json").read_text())
    h, w = cv2.imread(str(image)).shape[:2]
    assert data["image"] == {"path": str(image), "width": w, "height": h}
    assert set(data["timings_ms"]) == {"preprocess", "inference", "postprocess"}
    result = FastSAM(demo).segment(image)
    assert len(data["instances"]) == len(result) > 0
    masks = result.masks
    for inst, mask, box, score in zip(data["instances"], masks, result.boxes, result.scores):
        assert isinstance(inst["segmentation"]["counts"], str)  # COCO's compressed form, as pycocotools reads it
        np.testing.assert_array_equal(mask_utils.decode(inst["segmentation"]).astype(bool), mask)
        assert inst["area"] == int(mask.sum())
        np.testing.assert_allclose(inst["box"], box, atol=1e-3)
        assert abs(inst["score"] - score) < 1e-5
    overlay = cv2.imread(str(tmp_path / "o.png"))
    assert overlay.shape == (h, w, 3)
    assert (overlay != cv2.imread(str(image))).any()
    assert "instances" in capsys.readouterr().err


def test_segment_options(demo, tmp_path):
    image = str(demo / "example.jpg")
    assert main(["segment", image, "--no-retina", "--conf", "0.5", "--max-det", "2", "--json", str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["instances"]) <= 2
    size = FastSAM(demo).imgsz
    assert data["mask_size"] == {"width": size[1], "height": size[0]}


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.jpg"], "not found"),
        (["{img}", "--model", "/nonexistent/model"], "model not found"),
        (["{img}", "--conf", "1.5"], "conf"),
        (["{img}", "--imgsz", "320"], "static input"),
        (["{img}", "--json", "/nonexistent/dir/r.json"], "does not exist"),
        (["{img}", "--out", "{tmp}/overlay.unknownext"], "cannot write overlay"),
        (["{notimage}"], "cannot decode"),
    ],
)
def test_bad_input_exit_2_one_line(demo, tmp_path, capsys, args, message):
    (tmp_path / "x.jpg").write_text("not an image")
    fill = {"img": str(demo / "example.jpg"), "tmp": str(tmp_path), "notimage": str(tmp_path / "x.jpg")}
    status = main(["segment", *[a.format(**fill) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and message in err[0], err


def test_console_script(demo, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fastsam_onnx", "segment", str(demo / "example.jpg"), "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["instances"]
