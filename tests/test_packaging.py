"""Packaging: one distribution, one namespace, the demo bundle inside; a runtime-only install works."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    return next(out.glob("fastsam_onnx-*.whl"))


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"fastsam_onnx", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for required in (
        "fastsam_onnx/py.typed",
        "fastsam_onnx/models/demo/fastsam.onnx",
        "fastsam_onnx/models/demo/manifest.json",
        "fastsam_onnx/models/demo/example.jpg",
        "fastsam_onnx/export/fastsam.py",
        "fastsam_onnx/server/page/index.html",
        "fastsam_onnx/server/page/app.js",
    ):
        assert required in names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    base = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0].split("=")[0] for line in base) == [
        "Pillow", "ftfy", "numpy", "onnxruntime", "opencv-python-headless", "regex", "tqdm",
    ]
    demo_mb = zipfile.ZipFile(wheel).getinfo("fastsam_onnx/models/demo/fastsam.onnx").file_size / 1e6
    assert demo_mb < 8, f"demo model is {demo_mb:.1f} MB"


@pytest.mark.slow
def test_runtime_only_install_segments(wheel, tmp_path):
    """A fresh venv with just the wheel and its base dependencies runs the main command, text prompts included."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout.lower()
    assert "torch" not in listed and "ultralytics" not in listed
    exe = env_dir / "bin" / "fastsam-onnx"
    example = ROOT / "models" / "demo" / "example.jpg"
    run = subprocess.run(
        [str(exe), "segment", str(example), "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "o.png")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "r.json").stat().st_size > 0
    for name in ("runtime", "models", "export"):
        probe = subprocess.run([str(py), "-c", f"import {name}"], capture_output=True, cwd=tmp_path)
        assert probe.returncode != 0, f"top-level module {name!r} is importable"
