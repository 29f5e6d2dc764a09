"""The shipped demo model: quality on a held-out synthetic set, and the recipe that made it (tools/train_demo.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.manifest import sha256_file
from fastsam_onnx.models.evaluate import evaluate_bundle

#: stated in README.md: mean best mask IoU per ground-truth instance on 50 held-out scenes
QUALITY_BAR = 0.8
ROOT = Path(__file__).resolve().parents[1]


def test_demo_is_the_default_model(demo):
    model = FastSAM()
    assert model.onnx_path.resolve() == (demo / "fastsam.onnx").resolve()
    manifest = json.loads((demo / "manifest.json").read_text())
    assert manifest["sha256"]["onnx"] == sha256_file(demo / "fastsam.onnx")
    assert (demo / "fastsam.onnx").stat().st_size < 8e6


def test_demo_quality_on_held_out_scenes(demo):
    model = FastSAM(demo)
    score = evaluate_bundle(lambda im: model.segment(im, conf=0.4, iou=0.9).masks, n_images=50)
    assert score >= QUALITY_BAR, score


@pytest.mark.slow
def test_recipe_runs_end_to_end(tmp_path):
    """``--quick`` exercises every step of the recipe (data, training, export, example) in seconds."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_demo.py"), "--out", str(out), "--work", str(tmp_path / "work"), "--quick"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("fastsam-demo.pt", "fastsam.onnx", "manifest.json", "example.jpg"):
        assert (out / name).is_file(), name
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "fastsam" and m["sha256"]["weights"] == sha256_file(out / "fastsam-demo.pt")
    result = FastSAM(out).segment(out / "example.jpg", conf=0.0001)
    assert result.orig_shape == (160, 160) and result.boxes.shape == (len(result), 4)
