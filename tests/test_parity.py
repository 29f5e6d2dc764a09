"""End-to-end parity with ultralytics' FastSAMPredictor (pinned 8.4.190) on real photographs.

References: for a dynamic graph, ultralytics FastSAM on the PyTorch checkpoint (same minimal-rectangle
letterbox); for a static graph, ultralytics FastSAM on the same ONNX file (ultralytics pads it to the full
square, as we do). Models: a FastSAM-s-shaped net with test-made weights, the shipped demo model, and a
FastSAM-x-shaped net at one setting.
"""

from __future__ import annotations

import pytest

from fastsam_onnx import FastSAM
from parity import assert_parity

ultralytics = pytest.importorskip("ultralytics")
pytest.importorskip("torch")

IMAGES = ["bus.jpg", "zidane.jpg"]
SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)


def _reference(model_path, image, imgsz, retina):
    ref = ultralytics.FastSAM(str(model_path))
    return ref.predict(str(image), imgsz=imgsz, retina_masks=retina, verbose=False, device="cpu", **SETTINGS)[0]


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "letterboxed"])
@pytest.mark.parametrize("imgsz", [1024, 640])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_fastsam_s_shaped(s_checkpoint, export_bundle, assets, imgsz, dynamic, retina, record_property):
    bundle = export_bundle(s_checkpoint, imgsz, dynamic)
    model = FastSAM(bundle)
    reference_model = s_checkpoint if dynamic else bundle / "fastsam.onnx"
    for name in IMAGES:
        ref = _reference(reference_model, assets / name, imgsz, retina)
        ours = model.segment(assets / name, imgsz=imgsz, retina_masks=retina, **SETTINGS)
        figures = assert_parity(ref, ours, min_instances=10)
        record_property(name, figures)


def test_dynamic_graph_at_another_size(s_checkpoint, export_bundle, assets):
    """A dynamic graph exported at 1024 runs at 640 (and an odd size rounded up to the stride) like the reference."""
    model = FastSAM(export_bundle(s_checkpoint, 1024, True))
    for imgsz in (640, 800, 700):
        ref = _reference(s_checkpoint, assets / "bus.jpg", imgsz, True)
        assert_parity(ref, model.segment(assets / "bus.jpg", imgsz=imgsz, **SETTINGS))


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_demo_model(demo, export_bundle, assets, dynamic):
    checkpoint = demo / "fastsam-demo.pt"
    if dynamic:
        if not checkpoint.is_file():
            pytest.fail(f"demo checkpoint missing: {checkpoint}")
        bundle, reference_model = export_bundle(checkpoint, FastSAM(demo).imgsz[0], True), checkpoint
    else:
        bundle, reference_model = demo, demo / "fastsam.onnx"
    model = FastSAM(bundle)
    imgsz = model.imgsz[0]
    for image in (demo / "example.jpg", assets / "bus.jpg"):
        for retina in (True, False):
            ref = _reference(reference_model, image, imgsz, retina)
            # (the demo model finds 13 instances on example.jpg and 15 on bus.jpg at its 512: parity on them)
            assert_parity(ref, model.segment(image, imgsz=imgsz, retina_masks=retina, **SETTINGS), min_instances=10)
    # the demo model must find its own world's objects
    assert len(model.segment(demo / "example.jpg", **SETTINGS)) >= 3


@pytest.mark.slow
def test_fastsam_x_shaped(x_checkpoint, export_bundle, assets):
    bundle = export_bundle(x_checkpoint, 640, True)
    model = FastSAM(bundle)
    for name in IMAGES:
        ref = _reference(x_checkpoint, assets / name, 640, True)
        assert_parity(ref, model.segment(assets / name, imgsz=640, **SETTINGS), min_instances=10)
