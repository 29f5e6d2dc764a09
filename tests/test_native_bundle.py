"""The native converter's bundles (issue 24 item 1): today's layout and manifest plus ``"converter": "native"``,
accepted by the runtime, atomic, options with the torch exporter's meaning, no torch imported. Checkpoints: the demo
model's own ultralytics training checkpoint (``models/demo/fastsam-demo.pt``, fp16, as ultralytics saves them) and
the demo CLIP's state dict (``models/clip-demo/clip-demo.pt``); their torch-exported bundles are the references.
(Equality with the torch export on FastSAM-s/-x- and ViT-B/32-shaped checkpoints: test_native_fastsam.py and
test_native_clip.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from exportkit import bad_checkpoint, leftovers
from torchfree import run_blocked

from fastsam_onnx import FastSAM
from fastsam_onnx.errors import BadModelError, MissingExtraError
from fastsam_onnx.export import ExportError
from fastsam_onnx.export.native import convert_clip, convert_fastsam, converter_of
from fastsam_onnx.manifest import read_manifest, sha256_file
from fastsam_onnx.models import demo_clip_bundle

QUIET = dict(progress=lambda *a: None, report=lambda *a: None)
#: the fields the torch exporters write (export/fastsam.py, export/clip.py), "converter" included
FASTSAM_FIELDS = {
    "format_version", "kind", "model_file", "imgsz", "dynamic", "batch", "stride", "opset", "rewrites", "inputs",
    "outputs", "num_masks", "variant", "sha256", "source", "parity", "converter", "tools", "created",
}
CLIP_FIELDS = {
    "format_version", "kind", "precision", "quantization", "image_model_file", "text_model_file", "bpe_file",
    "embed_dim", "context_length", "image_resolution", "vocab_size", "opset", "image_encoder", "text_encoder",
    "preprocess", "tokenizer", "sha256", "source", "parity", "converter", "tools", "created",
}


@pytest.fixture(scope="module")
def static_bundle(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("native") / "static"
    return convert_fastsam(demo / "fastsam-demo.pt", out, imgsz=512, dynamic=False, **QUIET)


def test_fastsam_bundle_has_the_torch_layout(static_bundle, demo):
    torch_m = json.loads((demo / "manifest.json").read_text())  # made by export/fastsam.py (before "converter")
    m = read_manifest(static_bundle)
    assert sorted(p.name for p in static_bundle.iterdir()) == ["fastsam.onnx", "manifest.json"]
    assert set(m) == FASTSAM_FIELDS | {"self_check"} and set(torch_m) | {"converter"} == FASTSAM_FIELDS
    assert m["converter"] == "native" and converter_of(m) == "native" and converter_of(torch_m) == "torch"
    for key in ("format_version", "kind", "model_file", "imgsz", "dynamic", "batch", "stride", "rewrites", "inputs",
                "outputs", "num_masks", "variant", "source"):
        assert m[key] == torch_m[key], key
    assert m["sha256"] == {"onnx": sha256_file(static_bundle / "fastsam.onnx"), "weights": torch_m["sha256"]["weights"]}
    assert m["parity"] is None and m["self_check"]["image"] == "bus.jpg" and m["self_check"]["finite"] is True
    assert "torch" not in m["tools"] and {"onnx", "onnxruntime", "numpy"} <= set(m["tools"])


def test_fastsam_bundle_gives_the_torch_bundles_results(static_bundle, demo):
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, 512, 512), dtype=np.float32)
    ref = ort.InferenceSession(str(demo / "fastsam.onnx"), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    got = ort.InferenceSession(str(static_bundle / "fastsam.onnx"), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
    a, b = FastSAM(demo).segment(demo / "example.jpg"), FastSAM(static_bundle).segment(demo / "example.jpg")
    assert len(a) == len(b) > 5 and np.abs(a.boxes - b.boxes).max() < 0.01


def test_dynamic_is_the_default(demo, tmp_path):
    out = convert_fastsam(demo / "fastsam-demo.pt", tmp_path / "dyn", imgsz=512, **QUIET)
    m = read_manifest(out)
    assert m["dynamic"] is True and m["batch"] is None and m["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert m["self_check"]["input"] == [2, 3, 512, 384]  # bus.jpg at its own aspect ratio, a batch of two
    model = FastSAM(out)
    assert model.dynamic and model.imgsz == (512, 512)
    assert len(model.segment(demo / "example.jpg")) > 5


def test_static_batch(demo, tmp_path):
    out = convert_fastsam(demo / "fastsam-demo.pt", tmp_path / "b2", imgsz=256, dynamic=False, batch=2, **QUIET)
    m = read_manifest(out)
    assert m["batch"] == 2 and m["inputs"][0]["shape"] == [2, 3, 256, 256] and m["self_check"]["input"][0] == 2
    assert FastSAM(out).batch == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"imgsz": 100}, "multiple of 32"),
    ({"batch": 0, "dynamic": False}, "batch must be >= 1"),
    ({"half": True, "int8": True}, "choose one"),
    ({"int8": True}, "needs calibration images"),
    ({"calib": "."}, "only applies to --half or --int8"),
])
def test_bad_options(demo, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        convert_fastsam(demo / "fastsam-demo.pt", tmp_path / "b", **kwargs, **QUIET)
    assert not (tmp_path / "b").exists() and leftovers(tmp_path, "b") == []


def test_bad_checkpoint_leaves_nothing_and_keeps_the_old_bundle(demo, tmp_path):
    bad = bad_checkpoint(tmp_path / "bad.pt", "random")
    out = tmp_path / "bundle"
    with pytest.raises(BadModelError) as e:
        convert_fastsam(bad, out, **QUIET)
    assert "\n" not in str(e.value) and not out.exists() and leftovers(tmp_path, "bundle") == []
    convert_fastsam(demo / "fastsam-demo.pt", out, imgsz=256, **QUIET)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(BadModelError):
        convert_fastsam(bad, out, **QUIET)
    assert (out / "manifest.json").read_bytes() == before and leftovers(tmp_path, "bundle") == []
    convert_fastsam(demo / "fastsam-demo.pt", out, imgsz=320, **QUIET)  # replaced in place
    assert read_manifest(out)["imgsz"] == [320, 320] and leftovers(tmp_path, "bundle") == []
    clip_state = tmp_path / "state.pt"
    shutil.copyfile(demo_clip_bundle() / "clip-demo.pt", clip_state)  # a state dict, not an ultralytics checkpoint
    with pytest.raises(BadModelError, match="not an ultralytics checkpoint"):
        convert_fastsam(clip_state, out, **QUIET)


def test_int8_with_calibration_images(demo, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copyfile(demo / "example.jpg", calib / "a.jpg")
    lines = []
    out = convert_fastsam(demo / "fastsam-demo.pt", tmp_path / "q", imgsz=512, dynamic=False, int8=True, calib=calib,
                          progress=lambda *a: None, report=lines.append)
    m = read_manifest(out)
    assert m["variant"] == "int8" and m["quantization"]["format"] == "QDQ" and m["converter"] == "native"
    assert m["accuracy"]["reference"] == "fp32" and m["accuracy"]["images"] == ["a.jpg"]
    assert m["accuracy"]["mask_iou_mean"] >= 0.9 and len(lines) == 1 and "int8 vs fp32" in lines[0]
    assert m["self_check"]["finite"] and m["sha256"]["onnx"] == sha256_file(out / "fastsam.onnx")
    assert len(FastSAM(out).segment(demo / "example.jpg")) > 5


def test_half(demo, tmp_path, monkeypatch):
    pytest.importorskip("onnxconverter_common")
    out = convert_fastsam(demo / "fastsam-demo.pt", tmp_path / "h", imgsz=256, half=True, **QUIET)
    m = read_manifest(out)
    assert m["variant"] == "fp16" and "onnxconverter-common" in m["tools"] and m["accuracy"]["images"] == ["bus.jpg"]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxconverter_common" else real(n, *a))
    with pytest.raises(MissingExtraError, match=r"needs the \[fp16\] extra .*pip install 'fastsam-onnx\[fp16\]'") as e:
        convert_fastsam(demo / "fastsam-demo.pt", tmp_path / "h2", half=True, **QUIET)
    assert "\n" not in str(e.value) and not (tmp_path / "h2").exists()


def test_clip_bundle_has_the_torch_layout(tmp_path):
    from fastsam_onnx.clip import CLIP

    ref = demo_clip_bundle()  # exported by export/clip.py from clip-demo.pt
    out = convert_clip(ref / "clip-demo.pt", tmp_path / "clip", **QUIET)
    m, torch_m = read_manifest(out), read_manifest(ref)
    assert set(m) == CLIP_FIELDS | {"self_check"} and m["converter"] == "native" and m["precision"] == "fp32"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["clip_image.onnx", "clip_text.onnx", "bpe_simple_vocab_16e6.txt.gz", "manifest.json"])
    for key in ("format_version", "kind", "image_model_file", "text_model_file", "bpe_file", "embed_dim",
                "context_length", "image_resolution", "vocab_size", "image_encoder", "text_encoder", "preprocess",
                "tokenizer", "source"):
        assert m[key] == torch_m[key], key
    assert m["sha256"]["bpe"] == torch_m["sha256"]["bpe"] and m["sha256"]["weights"] == torch_m["sha256"]["weights"]
    a, b = CLIP(ref), CLIP(out)
    texts = ["a red circle", "a blue square", "the dog"]
    assert ((a.encode_texts(texts) * b.encode_texts(texts)).sum(1) > 0.99999).all()
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    assert float((a.encode_images([image]) * b.encode_images([image])).sum()) > 0.99999


def test_clip_int8(tmp_path):
    out = convert_clip(demo_clip_bundle() / "clip-demo.pt", tmp_path / "q", int8=True, **QUIET)
    m = read_manifest(out)
    assert m["precision"] == "int8" and m["quantization"]["format"] == "dynamic"
    assert m["self_check"]["image"]["min_cosine_to_fp32"] >= 0.99 and m["self_check"]["text"]["min_cosine_to_fp32"] >= 0.99


def test_recipe_keys_are_checked(tmp_path):
    from fastsam_onnx.export.native_bundle import convert_recipe

    with pytest.raises(ExportError, match="does not take opset"):
        convert_recipe("fastsam", tmp_path / "x.pt", tmp_path / "b", {"opset": 12}, progress=False)


NATIVE = r"""
import sys
from fastsam_onnx.export.native import convert_clip, convert_fastsam
from fastsam_onnx import FastSAM
from fastsam_onnx.clip import CLIP
weights, clip_weights, out = sys.argv[1:4]
convert_fastsam(weights, out + "/fastsam", imgsz=320, progress=lambda *a: None)
convert_clip(clip_weights, out + "/clip", int8=True, progress=lambda *a: None, report=lambda *a: None)
n = len(FastSAM(out + "/fastsam", clip=out + "/clip").segment(weights.replace("fastsam-demo.pt", "example.jpg")))
report(n=n, dim=CLIP(out + "/clip").embed_dim)
"""


def test_native_converter_imports_no_torch(demo, tmp_path):
    r = run_blocked(NATIVE, str(demo / "fastsam-demo.pt"), str(demo_clip_bundle() / "clip-demo.pt"), str(tmp_path))
    assert r["loaded"] == [] and r["attempts"] == [], r
    assert r["n"] > 5 and r["dim"] == read_manifest(demo_clip_bundle())["embed_dim"]
