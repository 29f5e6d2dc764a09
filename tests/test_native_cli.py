"""``fetch`` and ``export`` with the native converter (issue 24 item 1): in a child process where torch,
torchvision, ultralytics and clip cannot be imported, the four zoo names are fetched from a local HTTP server (the
zoo's SHA-256 checked) and converted, ``export fastsam|clip`` converts local checkpoints, and a zoo model is fetched
on first use; the options keep their meaning; bad checkpoints are one line and exit 2; ``--converter torch`` stays."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading

import pytest
from exportkit import bad_checkpoint, leftovers
from torchfree import run_blocked

from fastsam_onnx.cli import main
from fastsam_onnx.manifest import read_manifest
from fastsam_onnx.models import demo_bundle, demo_clip_bundle, registry
from fastsam_onnx.models.registry import ModelDescription, ModelSource

FASTSAM_PT, CLIP_PT = demo_bundle() / "fastsam-demo.pt", demo_clip_bundle() / "clip-demo.pt"


@pytest.fixture
def files(tmp_path):
    """A local HTTP server of a folder holding the demo checkpoints (FastSAM-s.pt, FastSAM-x.pt, ViT-B-32.pt):
    {file name: (url, sha256, size)}."""
    root = tmp_path / "served"
    root.mkdir()
    for name, src in (("FastSAM-s.pt", FASTSAM_PT), ("FastSAM-x.pt", FASTSAM_PT), ("ViT-B-32.pt", CLIP_PT)):
        shutil.copyfile(src, root / name)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield {p.name: (f"{base}/{p.name}", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size) for p in root.iterdir()}
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTSAM_ONNX_OFFLINE", raising=False)
    return tmp_path / "cache"


def _zoo(files) -> dict:
    """Registry entries like the real ones, pointed at the local server (FastSAM at 320: a quick conversion)."""
    s, x, c = files["FastSAM-s.pt"], files["FastSAM-x.pt"], files["ViT-B-32.pt"]
    return {
        "fastsam-s": ["fastsam", *s, {"imgsz": 320, "dynamic": True}],
        "fastsam-x": ["fastsam", *x, {"imgsz": 320, "dynamic": True}],
        "clip-vit-b-32": ["clip", *c, {}],
        "clip-vit-b-32-int8": ["clip", *c, {"int8": True}],
    }


def _patch(monkeypatch, zoo: dict) -> None:
    for name, (kind, url, sha, size, recipe) in zoo.items():
        monkeypatch.setitem(registry.REGISTRY, name, ModelDescription(name, kind, ModelSource(url, sha, size, "test"), recipe))


CHILD = r"""
import json, sys
from fastsam_onnx.models import registry
from fastsam_onnx.models.registry import ModelDescription, ModelSource
zoo, out, image = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
for name, (kind, url, sha, size, recipe) in zoo.items():
    registry.REGISTRY[name] = ModelDescription(name, kind, ModelSource(url, sha, size, "test"), recipe)
from fastsam_onnx.cli import main
status = {n: main(["fetch", n, "--quiet"]) for n in ("fastsam-s", "clip-vit-b-32", "clip-vit-b-32-int8")}
ckpt = out + "/cache/checkpoints/"
status["export fastsam"] = main(["export", "fastsam", "--weights", ckpt + "FastSAM-s.pt", "--out", out + "/f",
                                 "--imgsz", "256", "--static", "--quiet"])
status["export clip"] = main(["export", "clip", "--weights", ckpt + "ViT-B-32.pt", "--out", out + "/c", "--quiet"])
from fastsam_onnx import FastSAM
model = FastSAM("fastsam-x", clip="clip-vit-b-32-int8")  # fastsam-x: fetched and converted on first use
r = model.segment(image, texts=["a red circle"])
report(status=status, n=len(r), clip=model.clip.precision)
"""


def test_fetch_and_export_without_torch(files, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", str(tmp_path / "cache"))
    r = run_blocked(CHILD, json.dumps(_zoo(files)), str(tmp_path), str(demo_bundle() / "example.jpg"))
    assert r["loaded"] == [] and r["attempts"] == [], r
    assert all(v == 0 for v in r["status"].values()), r["status"]
    assert r["n"] >= 1 and r["clip"] == "int8"
    cache = tmp_path / "cache"
    for name, kind in (("fastsam-s", "fastsam"), ("fastsam-x", "fastsam"), ("clip-vit-b-32", "clip"),
                       ("clip-vit-b-32-int8", "clip")):
        m = read_manifest(cache / name)
        assert m["kind"] == kind and m["converter"] == "native" and "torch" not in m["tools"], name
    assert read_manifest(cache / "fastsam-s")["imgsz"] == [320, 320] and read_manifest(cache / "fastsam-s")["dynamic"]
    assert read_manifest(cache / "clip-vit-b-32-int8")["precision"] == "int8"
    assert read_manifest(cache / "clip-vit-b-32")["precision"] == "fp32"
    f = read_manifest(tmp_path / "f")
    assert (f["dynamic"], f["inputs"][0]["shape"]) == (False, [1, 3, 256, 256])
    assert read_manifest(tmp_path / "c")["converter"] == "native"


def test_fetch_checks_the_zoo_sha256(files, monkeypatch, cache, capsys):
    zoo = _zoo(files)
    zoo["fastsam-s"][2] = "0" * 64  # the served file no longer has the pinned digest
    _patch(monkeypatch, zoo)
    assert main(["fetch", "fastsam-s", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and not (cache / "fastsam-s").exists()


def test_export_clip_by_name_downloads_vit_b_32(files, monkeypatch, tmp_path, cache, capsys):
    _patch(monkeypatch, _zoo(files))
    assert main(["export", "clip", "--out", str(tmp_path / "c"), "--quiet"]) == 0  # --weights ViT-B/32, the default
    assert (cache / "checkpoints" / "ViT-B-32.pt").is_file() and read_manifest(tmp_path / "c")["converter"] == "native"
    assert main(["export", "clip", "--weights", "ViT-L/14", "--out", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--converter torch" in err[0]


def _export(*args) -> int:
    return main(["export", "fastsam", "--weights", str(FASTSAM_PT), *map(str, args), "--quiet"])


def test_export_options(tmp_path, capsys):
    assert _export("--out", tmp_path / "s", "--imgsz", 256, "--static", "--batch", 2) == 0
    m = read_manifest(tmp_path / "s")
    assert m["inputs"][0]["shape"] == [2, 3, 256, 256] and m["batch"] == 2 and m["converter"] == "native"
    assert "converter: native" in capsys.readouterr().out
    assert _export("--out", tmp_path / "d", "--imgsz", 256) == 0 and read_manifest(tmp_path / "d")["dynamic"] is True
    for args, message in ((["--batch", 2], "add --static"), (["--opset", 12], "--opset applies to --converter torch"),
                          (["--imgsz", 100], "multiple of 32"), (["--int8"], "needs calibration images")):
        assert _export("--out", tmp_path / "x", *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
    assert not (tmp_path / "x").exists()


def test_export_int8_with_calib(tmp_path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copyfile(demo_bundle() / "example.jpg", calib / "a.jpg")
    assert _export("--out", tmp_path / "q", "--imgsz", 512, "--int8", "--calib", calib) == 0
    assert "int8 vs fp32 on 1 images" in capsys.readouterr().err  # the accuracy line, even with --quiet
    m = read_manifest(tmp_path / "q")
    assert m["variant"] == "int8" and m["quantization"]["calibration"]["images"] == 1


def test_export_half_without_onnxconverter(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxconverter_common" else real(n, *a))
    assert _export("--out", tmp_path / "h", "--half") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[fp16] extra" in err[0] and "pip install 'fastsam-onnx[fp16]'" in err[0]


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "truncated", "state-dict"])
def test_bad_checkpoints_exit_2_one_line_nothing_left(kind, tmp_path, capsys):
    ckpt = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        ckpt.write_bytes(FASTSAM_PT.read_bytes()[: FASTSAM_PT.stat().st_size // 2])
    elif kind == "state-dict":
        shutil.copyfile(CLIP_PT, ckpt)
    else:
        bad_checkpoint(ckpt, kind)
    out = tmp_path / "bundle"
    assert main(["export", "fastsam", "--weights", str(ckpt), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastsam-onnx export: error:"), err
    assert not out.exists() and leftovers(tmp_path, "bundle") == []
    if kind in ("random", "state-dict"):
        assert main(["export", "clip", "--weights", str(ckpt if kind == "random" else FASTSAM_PT), "--out", str(out),
                     "--quiet"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not out.exists()


def test_torch_converter_stays_reachable(tmp_path, monkeypatch, capsys):
    import importlib.util

    import fastsam_onnx.cli.export as cli_export

    assert "--converter" in cli_export.__doc__
    with pytest.raises(SystemExit):
        main(["export", "fastsam", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "native (the default)" in help_text and "torch: the PyTorch reference exporter" in help_text
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "ultralytics" else real(n, *a))
    assert _export("--out", tmp_path / "t", "--converter", "torch") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the [export] extra" in err[0]
