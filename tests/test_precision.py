"""Precision variants of the export stage (``--half`` fp16, ``--int8`` static QDQ): the bundle, its manifest,
the unchanged runtime, and the accuracy against the fp32 graph on real photographs.

Two models. The FastSAM-s-shaped checkpoint with test-made weights (``s_checkpoint``) exercises the
real architecture end to end; but its trunk is random (only BatchNorm statistics and the class conv are
fitted), and a random deep net amplifies any per-layer rounding: fp16's relative error grows from 1e-3
after the stem to ~3e-2 at the head outputs (measured layer by layer), int8's from 6e-2 to ~0.8. Its
precision figures are therefore much worse than a trained network's, and the accuracy goals (fp16 >= 0.99,
int8 >= 0.95 mean mask IoU vs fp32) are checked on the trained demo model (``demo``), whose checkpoint
ships in the demo bundle.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ultralytics")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxconverter_common")

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.cli import main  # noqa: E402
from fastsam_onnx.export import ExportError  # noqa: E402
from fastsam_onnx.export.fastsam import export_fastsam  # noqa: E402
from fastsam_onnx.export.precision import TARGET_MASK_IOU, tail_nodes, variant_accuracy  # noqa: E402
from parity import match  # noqa: E402

IMAGES = ["bus.jpg", "zidane.jpg"]
IMGSZ = 640
ACCURACY_KEYS = {
    "reference", "images", "conf", "iou", "instances", "instances_fp32", "instances_variant", "matched", "measured",
    "mask_iou_mean", "count_agreement", "target_mask_iou",
}


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def photos(assets, tmp_path_factory):
    """A calibration folder: the two real photographs."""
    d = tmp_path_factory.mktemp("photos")
    for name in IMAGES:
        shutil.copy(assets / name, d / name)
    return d


@pytest.fixture(scope="module")
def s_variants(s_checkpoint, photos, tmp_path_factory):
    """The s-shaped checkpoint exported static at 640 as fp16 and as int8 (calibrated on the photos)."""
    d = tmp_path_factory.mktemp("variants")
    kw = dict(imgsz=IMGSZ, dynamic=False, progress=_quiet, report=_quiet)
    return {
        "fp16": export_fastsam(s_checkpoint, d / "fp16", half=True, **kw),
        "int8": export_fastsam(s_checkpoint, d / "int8", int8=True, calib=photos, **kw),
    }


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_manifest_records_variant_and_accuracy(s_variants, variant):
    m = _manifest(s_variants[variant])
    assert m["variant"] == variant
    acc = m["accuracy"]
    assert set(acc) >= ACCURACY_KEYS and acc["reference"] == "fp32"
    assert acc["images"] == IMAGES and len(acc["instances"]) == 2
    assert acc["target_mask_iou"] == TARGET_MASK_IOU[variant]
    assert acc["measured"] is True and acc["instances_fp32"] == sum(c[0] for c in acc["instances"]) > 0
    assert 0 <= acc["mask_iou_mean"] <= 1 and 0 <= acc["count_agreement"] <= 1
    # the runtime's interface is unchanged: fp32 in, fp32 out
    assert [i["dtype"] for i in m["inputs"]] == ["float32"]
    assert [o["dtype"] for o in m["outputs"]] == ["float32", "float32"]
    assert m["parity"]["graph"] == "fp32"
    if variant == "int8":
        assert m["quantization"]["format"] == "QDQ" and m["quantization"]["calibration"]["images"] == 2


def test_fp32_manifest_says_fp32(s_checkpoint, export_bundle):
    m = _manifest(export_bundle(s_checkpoint, IMGSZ, False))
    assert m["variant"] == "fp32" and "accuracy" not in m


def test_fp16_graph_holds_fp16_weights(s_variants):
    model = onnx.load(str(s_variants["fp16"] / "fastsam.onnx"))
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}  # conv weights
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert {p.key for p in model.metadata_props} >= {"stride", "names"}  # ultralytics metadata kept


def test_int8_graph_is_qdq_with_a_float_tail(s_variants, s_checkpoint, export_bundle):
    model = onnx.load(str(s_variants["int8"] / "fastsam.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    fp32 = onnx.load(str(export_bundle(s_checkpoint, IMGSZ, False) / "fastsam.onnx"))
    tail = set(tail_nodes(fp32))
    producer = {o: n for n in model.graph.node for o in n.output}
    assert tail <= {n.name for n in model.graph.node}
    # no tail output is quantized, and output0 (boxes, scores, coefficients) comes from the float tail
    assert not any(n.op_type == "QuantizeLinear" and producer.get(n.input[0]) is not None and producer[n.input[0]].name in tail for n in model.graph.node)
    assert producer["output0"].name in tail


def test_tail_nodes_are_the_decoding_tail(s_checkpoint, export_bundle):
    model = onnx.load(str(export_bundle(s_checkpoint, IMGSZ, False) / "fastsam.onnx"))
    tail = tail_nodes(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert {"Softmax", "Sigmoid", "Concat", "Div"} <= {ops[n] for n in tail}
    assert all(n.startswith("/model.22/") and not n.startswith(("/model.22/cv", "/model.22/proto")) for n in tail)
    last = set(tail_nodes(model, last_convs=True)) - set(tail)
    assert len(last) == 9 and all(ops[n] == "Conv" for n in last)  # 3 branches x 3 levels


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variants_run_unchanged_and_their_accuracy_is_reproducible(s_variants, s_checkpoint, export_bundle, assets, variant):
    bundle = s_variants[variant]
    model = FastSAM(bundle, providers="cpu")
    assert model.session.input_dtype == np.float32 and model.imgsz == (IMGSZ, IMGSZ)
    result = model.segment(assets / "bus.jpg")
    assert len(result) > 0 and result.masks.shape[1:] == result.orig_shape
    fp32 = export_bundle(s_checkpoint, IMGSZ, False) / "fastsam.onnx"
    again = variant_accuracy(fp32, bundle / "fastsam.onnx", [assets / n for n in IMAGES], imgsz=(IMGSZ, IMGSZ))
    recorded = _manifest(bundle)["accuracy"]
    assert again["instances"] == recorded["instances"] and again["matched"] == recorded["matched"]
    assert again["mask_iou_mean"] == pytest.approx(recorded["mask_iou_mean"], abs=1e-4)


def test_fp16_on_the_random_trunk_checkpoint(s_variants, s_checkpoint, export_bundle, assets):
    """fp16 vs fp32 with the parity harness's matching (same order or best box IoU), on the s-shaped
    checkpoint: close, but short of the 0.99 goal for the reason in the module docstring (measured 0.982)."""
    ours, ref = FastSAM(s_variants["fp16"], providers="cpu"), FastSAM(export_bundle(s_checkpoint, IMGSZ, False), providers="cpu")
    ious = []
    for name in IMAGES:
        a, b = ref.segment(assets / name), ours.segment(assets / name)
        assert abs(len(a) - len(b)) <= 1, (len(a), len(b))
        n = min(len(a), len(b))
        idx = match(a.boxes[:n], b.boxes)
        ious += [_mask_iou(a.masks[i], b.masks[j]) for i, j in enumerate(idx) if _box_iou(a.boxes[i], b.boxes[j]) > 0.9]
    assert len(ious) >= 30
    assert np.mean(ious) >= 0.97, np.mean(ious)


def _box_iou(a, b) -> float:
    from fastsam_onnx.fixup import box_iou

    return float(box_iou(a[None], b[None])[0, 0])


def test_precision_goals_on_the_trained_demo_model(demo, photos, tmp_path):
    """The goals on a trained network: fp16 >= 0.99 and int8 >= 0.95 mean mask IoU vs fp32 (matched
    instances) on the real photographs plus the demo's own example image."""
    checkpoint = demo / "fastsam-demo.pt"
    if not checkpoint.is_file():
        pytest.fail(f"demo checkpoint missing: {checkpoint}")
    calib = tmp_path / "calib"
    shutil.copytree(photos, calib)
    shutil.copy(demo / "example.jpg", calib / "example.jpg")
    imgsz = FastSAM(demo).imgsz[0]
    for variant, flags in (("fp16", dict(half=True)), ("int8", dict(int8=True))):
        bundle = export_fastsam(checkpoint, tmp_path / variant, imgsz=imgsz, dynamic=False, calib=calib, progress=_quiet, **flags)
        acc = _manifest(bundle)["accuracy"]
        assert acc["images"] == ["bus.jpg", "example.jpg", "zidane.jpg"]
        assert acc["matched"] >= 10, acc
        assert acc["mask_iou_mean"] >= TARGET_MASK_IOU[variant], acc
        assert len(FastSAM(bundle, providers="cpu").segment(demo / "example.jpg")) > 0


def test_option_errors(s_checkpoint, photos, tmp_path):
    with pytest.raises(ExportError, match="one of half"):
        export_fastsam(s_checkpoint, tmp_path / "b", half=True, int8=True, calib=photos)
    with pytest.raises(ExportError, match="--calib"):
        export_fastsam(s_checkpoint, tmp_path / "b", int8=True)
    with pytest.raises(ExportError, match="only applies"):
        export_fastsam(s_checkpoint, tmp_path / "b", calib=photos)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images"):
        export_fastsam(s_checkpoint, tmp_path / "b", int8=True, calib=tmp_path / "empty")
    with pytest.raises(ExportError, match="not found"):
        export_fastsam(s_checkpoint, tmp_path / "b", int8=True, calib=tmp_path / "missing")
    assert not (tmp_path / "b").exists()


def test_cli_flags(s_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "fastsam", "--weights", str(s_checkpoint), "--out", str(tmp_path / "b"), "--half", "--int8"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    status = main(["export", "fastsam", "--weights", str(s_checkpoint), "--out", str(tmp_path / "b"), "--int8"])
    assert status == 2 and "--calib" in capsys.readouterr().err


def test_accuracy_is_not_measured_without_instances(demo, tmp_path):
    """No fp32 instance on any image: the record says "not measured" (None), never a perfect 1.0."""
    import cv2

    from fastsam_onnx.export.precision import NOT_MEASURED, accuracy_line

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 127, np.uint8))
    graph = demo / "fastsam.onnx"
    acc = variant_accuracy(graph, graph, [blank])
    assert acc["instances"] == [[0, 0]] and acc["instances_fp32"] == 0 and acc["measured"] is False
    assert acc["mask_iou_mean"] is None and acc["count_agreement"] is None and acc["note"] == NOT_MEASURED
    line = accuracy_line("fp16", {**acc, "target_mask_iou": 0.99})
    assert line.startswith("warning:") and "not measured" in line and "1.0" not in line
    # the same graph on a scene with instances: measured, and perfect for a real reason
    acc = variant_accuracy(graph, graph, [demo / "example.jpg"])
    assert acc["measured"] is True and acc["instances_fp32"] > 0
    assert acc["mask_iou_mean"] == 1.0 and acc["count_agreement"] == 1.0
    assert "mean mask IoU 1.0000" in accuracy_line("fp16", {**acc, "target_mask_iou": 0.99})
