"""Shared fixtures: real photographs from the ultralytics package, test-made checkpoints and their bundles."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the repository-only tools (not installed: recipes, suite runners), imported by their module names
sys.path.append(str(Path(__file__).resolve().parents[1] / "tools"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from fastsam_onnx.models import demo_bundle  # noqa: E402


@pytest.fixture(scope="session")
def assets() -> Path:
    """Folder of the real photographs shipped inside the ultralytics package (bus.jpg, zidane.jpg)."""
    ultralytics = pytest.importorskip("ultralytics")
    return Path(ultralytics.__file__).parent / "assets"


@pytest.fixture(scope="session")
def demo() -> Path:
    """The shipped demo bundle."""
    d = demo_bundle()
    if not (d / "fastsam.onnx").is_file():
        pytest.fail(f"demo bundle missing at {d}: run python tools/train_demo.py --out models/demo")
    return d


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def _checkpoint(cache_dir: Path, cfg: str) -> Path:
    from modelmaker import make_checkpoint

    path = cache_dir / f"{Path(cfg).stem}-test.pt"
    if not path.exists():
        make_checkpoint(cfg, path, seed=0)
    return path


def _bundle(cache_dir: Path, weights: Path, imgsz: int, dynamic: bool) -> Path:
    from fastsam_onnx.export.fastsam import export_fastsam

    out = cache_dir / f"{weights.stem}-{imgsz}-{'dynamic' if dynamic else 'static'}"
    if not out.exists():
        export_fastsam(weights, out, imgsz=imgsz, dynamic=dynamic, progress=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def s_checkpoint(cache_dir) -> Path:
    """A FastSAM-s-shaped checkpoint (yolov8s-seg, one class) with test-made weights that detect things."""
    return _checkpoint(cache_dir, "yolov8s-seg.yaml")


@pytest.fixture(scope="session")
def x_checkpoint(cache_dir) -> Path:
    """A FastSAM-x-shaped checkpoint (yolov8x-seg, one class)."""
    return _checkpoint(cache_dir, "yolov8x-seg.yaml")


@pytest.fixture(scope="session")
def export_bundle(cache_dir):
    """``export_bundle(weights, imgsz, dynamic)`` → bundle dir, exported once per session."""
    return lambda weights, imgsz, dynamic: _bundle(cache_dir, weights, imgsz, dynamic)
