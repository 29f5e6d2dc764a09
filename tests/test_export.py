"""The export stage: bundle contents, manifest, parity check, and clean failures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from exportkit import bad_checkpoint, leftovers

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("ultralytics")

from fastsam_onnx.cli import main  # noqa: E402
from fastsam_onnx.manifest import sha256_file  # noqa: E402


def _save(model, path: Path) -> Path:
    torch.save({"model": model.half(), "train_args": {"task": getattr(model, "task", "segment")}}, path)
    return path


@pytest.fixture(scope="module")
def tiny_seg(tmp_path_factory) -> Path:
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(0)
    m = SegmentationModel("yolov8n-seg.yaml", nc=1, verbose=False)
    m.names = {0: "object"}
    return _save(m, tmp_path_factory.mktemp("ckpt") / "tiny-seg.pt")


def _export(args, capsys):
    """The torch exporter (``--converter torch``; the native converter, the default: test_native_*.py)."""
    status = main(["export", "fastsam", *map(str, args), "--converter", "torch"])
    return status, capsys.readouterr()


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "detect", "multiclass"])
def test_bad_checkpoint_exit_2_one_line_nothing_left(kind, tmp_path, capsys):
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    ckpt = tmp_path / f"{kind}.pt"
    if kind == "detect":
        _save(DetectionModel("yolov8n.yaml", nc=1, verbose=False), ckpt)
    elif kind == "multiclass":
        _save(SegmentationModel("yolov8n-seg.yaml", nc=3, verbose=False), ckpt)
    else:
        bad_checkpoint(ckpt, kind)
    out = tmp_path / "bundle"
    status, cap = _export(["--weights", ckpt, "--out", out, "--imgsz", 320], capsys)
    assert status == 2
    err_lines = [line for line in cap.err.splitlines() if line.startswith("fastsam-onnx")]
    assert len(err_lines) == 1 and "error" in err_lines[0], cap.err
    assert not out.exists()
    assert leftovers(tmp_path, "bundle") == []


def test_bad_imgsz_exit_2(tiny_seg, tmp_path, capsys):
    status, cap = _export(["--weights", tiny_seg, "--out", tmp_path / "b", "--imgsz", 100], capsys)
    assert status == 2 and "multiple of 32" in cap.err


def test_parity_failure_is_an_error_and_leaves_nothing(tiny_seg, tmp_path, monkeypatch, capsys):
    import onnxsim
    from onnx import numpy_helper

    real = onnxsim.simplify

    def tampered(model, *a, **k):
        m, ok = real(model, *a, **k)
        last_conv = [n for n in m.graph.node if n.op_type == "Conv" and len(n.input) == 3][-1]
        init = next(t for t in m.graph.initializer if t.name == last_conv.input[2])  # its bias
        arr = numpy_helper.to_array(init) + 0.5
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
        return m, ok

    monkeypatch.setattr(onnxsim, "simplify", tampered)
    out = tmp_path / "bundle"
    status, cap = _export(["--weights", tiny_seg, "--out", out, "--imgsz", 320], capsys)
    assert status == 2 and "disagree" in cap.err, cap.err
    assert not out.exists() and leftovers(tmp_path, "bundle") == []


@pytest.mark.parametrize("dynamic", [False, True])
def test_bundle_and_manifest(tiny_seg, tmp_path, capsys, dynamic):
    out = tmp_path / "bundle"
    args = ["--weights", tiny_seg, "--out", out, "--imgsz", 320] + ([] if dynamic else ["--static"])  # dynamic: the default
    status, cap = _export(args, capsys)
    assert status == 0, cap.err
    assert "[5/6]" in cap.err  # progress on the terminal
    assert sorted(p.name for p in out.iterdir()) == ["fastsam.onnx", "manifest.json"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["kind"] == "fastsam" and m["dynamic"] is dynamic
    assert m["batch"] == (None if dynamic else 1)
    assert m["imgsz"] == [320, 320] and m["stride"] == 32
    assert m["sha256"]["onnx"] == sha256_file(out / "fastsam.onnx")
    assert m["sha256"]["weights"] == sha256_file(tiny_seg)
    assert [i["name"] for i in m["inputs"]] == ["images"]
    assert [o["name"] for o in m["outputs"]] == ["output0", "output1"]
    assert m["inputs"][0]["dtype"] == "float32"
    if dynamic:
        assert all(isinstance(d, str) for d in np.array(m["inputs"][0]["shape"])[[0, 2, 3]])
    else:
        assert m["inputs"][0]["shape"] == [1, 3, 320, 320]
        assert m["outputs"][0]["shape"] == [1, 37, 2100] and m["outputs"][1]["shape"] == [1, 32, 80, 80]
    assert set(m["parity"]["max_abs_diff"]) == {"output0", "output1"}
    assert max(m["parity"]["max_abs_diff"].values()) < 0.05
    assert {"torch", "ultralytics", "onnx", "onnxsim", "onnxruntime"} <= set(m["tools"])
    assert m["converter"] == "torch"  # the native converter writes "native" (test_native_bundle.py)
    graph = onnx.load(str(out / "fastsam.onnx"))
    onnx.checker.check_model(graph)
    assert {p.key for p in graph.metadata_props} >= {"stride", "names", "task"}  # ultralytics can load it too
    assert m["rewrites"] == {"dfl_last_axis": 1, "upsample_as_conv": 1}  # see export/rewrite.py
    assert "ConvTranspose" not in {n.op_type for n in graph.graph.node}
    softmax = [n for n in graph.graph.node if n.op_type == "Softmax"]
    assert len(softmax) == 1 and onnx.helper.get_attribute_value(softmax[0].attribute[0]) == 3
    # overwrite an existing bundle in place
    status, _ = _export(args, capsys)
    assert status == 0 and leftovers(tmp_path, "bundle") == []


def test_batch_and_opset(tiny_seg, tmp_path, capsys):
    out = tmp_path / "b2"
    status, cap = _export(["--weights", tiny_seg, "--out", out, "--imgsz", 320, "--static", "--batch", 2, "--opset", 17], capsys)
    assert status == 0, cap.err
    m = json.loads((out / "manifest.json").read_text())
    assert m["batch"] == 2 and m["opset"] == 17 and m["inputs"][0]["shape"][0] == 2
    from fastsam_onnx import FastSAM

    assets = Path(__import__("ultralytics").__file__).parent / "assets"
    assert FastSAM(out).segment(assets / "bus.jpg").orig_shape == (1080, 810)


def test_console_script_exists():
    proc = subprocess.run([sys.executable, "-m", "fastsam_onnx", "export", "fastsam", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--weights" in proc.stdout
