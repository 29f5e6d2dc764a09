"""The native FastSAM converter (issue 24 items 3 and 4): the YOLOv8-seg graph built from a checkpoint's records
with numpy and onnx (:func:`fastsam_onnx.export.native_fastsam.build_fastsam`) against the torch export
(:func:`fastsam_onnx.export.fastsam.export_fastsam`, conftest's ``export_bundle``).

On FastSAM-s- and FastSAM-x-shaped checkpoints saved as ultralytics saves them (fp16, BN-calibrated and fitted
weights, tests/modelmaker.py), read by :func:`~fastsam_onnx.export.checkpoint.read_checkpoint`: raw outputs within
1e-4 of the torch export's on the real photographs (static and dynamic, 640 and 1024; measured: 0, the graphs
compute bit for bit the same), ``segment`` gives the same instances (retina and letterboxed), the graph is as
simplified as onnxsim would make it, carries the torch exporter's node names, and unknown architectures are one-line
BadModelErrors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.errors import BadModelError
from fastsam_onnx.export.checkpoint import Record, read_checkpoint
from fastsam_onnx.export.native_fastsam import build_fastsam
from fastsam_onnx.export.onnx_graph import save
from fastsam_onnx.manifest import MANIFEST_NAME, sha256_file

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("ultralytics")  # the reference bundles and the photographs
torch = pytest.importorskip("torch")

IMAGES = ("bus.jpg", "zidane.jpg")
SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)
TOL = 1e-4  # the bound on |native - torch export|, fp32 raw outputs
_MODELS: dict[Path, Record] = {}


def _model(checkpoint: Path) -> Record:
    """``ckpt["ema"] or ckpt["model"]`` of a checkpoint read without torch (cached per file)."""
    if checkpoint not in _MODELS:
        ckpt = read_checkpoint(checkpoint)
        _MODELS[checkpoint] = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
    return _MODELS[checkpoint]


def _session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    src = model if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(str(src) if isinstance(src, Path) else src, so, providers=["CPUExecutionProvider"])


def _inputs(assets: Path, imgsz: int, dynamic: bool) -> dict[str, np.ndarray]:
    """The photographs as the runtime feeds them (minimal-rectangle letterbox for a dynamic graph)."""
    from fastsam_onnx.export.precision import letterboxed

    return {name: letterboxed(assets / name, (imgsz, imgsz), auto=dynamic) for name in IMAGES}


def _max_diff(a, b, feeds: dict[str, np.ndarray]) -> list[float]:
    worst = [0.0, 0.0]
    for x in feeds.values():
        for k, (u, v) in enumerate(zip(a.run(None, {"images": x}), b.run(None, {"images": x}))):
            assert u.shape == v.shape and u.dtype == v.dtype == np.float32
            worst[k] = max(worst[k], float(np.abs(u - v).max()))
    return worst


def native_bundle(torch_bundle: Path, proto, out: Path) -> Path:
    """A bundle of the native graph with the torch bundle's manifest (digest and converter updated)."""
    out.mkdir(parents=True, exist_ok=True)
    save(proto, out / "fastsam.onnx")
    manifest = json.loads((torch_bundle / MANIFEST_NAME).read_text())
    manifest.update(converter="native", parity=None)
    manifest["sha256"]["onnx"] = sha256_file(out / "fastsam.onnx")
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    return out


@pytest.mark.parametrize("imgsz,dynamic", [(640, False), (1024, False), (640, True), (1024, True)],
                         ids=["640-static", "1024-static", "640-dynamic", "1024-dynamic"])
def test_raw_outputs_equal_the_torch_export(s_checkpoint, export_bundle, assets, imgsz, dynamic, record_property):
    bundle = export_bundle(s_checkpoint, imgsz, dynamic)
    proto = build_fastsam(_model(s_checkpoint), imgsz=imgsz, dynamic=dynamic)
    native, ref = _session(proto), _session(bundle / "fastsam.onnx")
    feeds = _inputs(assets, imgsz, dynamic)
    if dynamic:  # other input sizes and a batch: the in-graph anchors follow the feature maps
        other = _inputs(assets, 1664 - imgsz, True)
        feeds.update({f"{k}@{1664 - imgsz}": v for k, v in other.items()})
        feeds["batch of 2"] = np.concatenate([feeds["bus.jpg"], feeds["bus.jpg"][..., ::-1]])
    diffs = _max_diff(native, ref, feeds)
    record_property("max_abs_diff", diffs)
    assert max(diffs) <= TOL, diffs
    # the torch bundle's inputs and outputs: names, element types, shapes and axis names
    for mine, theirs in ((native.get_inputs(), ref.get_inputs()), (native.get_outputs(), ref.get_outputs())):
        assert [(v.name, v.type) for v in mine] == [(v.name, v.type) for v in theirs]
    assert native.get_inputs()[0].shape == ref.get_inputs()[0].shape
    assert native.get_outputs()[1].shape == ref.get_outputs()[1].shape
    if dynamic:  # output0's second axis: the torch bundle has the exporter's name "Concatoutput0_dim_1" for 37
        assert native.get_outputs()[0].shape == ["batch", 37, "anchors"]
    else:
        assert native.get_outputs()[0].shape == ref.get_outputs()[0].shape


@pytest.mark.parametrize("imgsz,dynamic", [(1024, True), (640, False)], ids=["1024-dynamic", "640-static"])
def test_segment_same_instances(s_checkpoint, export_bundle, assets, tmp_path, imgsz, dynamic, record_property):
    ref_bundle = export_bundle(s_checkpoint, imgsz, dynamic)
    proto = build_fastsam(_model(s_checkpoint), imgsz=imgsz, dynamic=dynamic)
    ours, ref = FastSAM(native_bundle(ref_bundle, proto, tmp_path / "native")), FastSAM(ref_bundle)
    for name in IMAGES:
        for retina in (True, False):
            a = ours.segment(assets / name, imgsz=imgsz, retina_masks=retina, **SETTINGS)
            b = ref.segment(assets / name, imgsz=imgsz, retina_masks=retina, **SETTINGS)
            assert len(a) == len(b) >= 10, (name, retina, len(a), len(b))
            assert float(np.abs(a.boxes - b.boxes).max()) <= 0.01
            assert float(np.abs(a.scores - b.scores).max()) <= 1e-5
            inter = (a.masks & b.masks).sum((1, 2))
            union = np.maximum((a.masks | b.masks).sum((1, 2)), 1)
            assert float((inter / union).min()) >= 0.999
            record_property(f"{name} {'retina' if retina else 'letterboxed'}", len(a))


@pytest.mark.slow
def test_fastsam_x_shaped(x_checkpoint, export_bundle, assets, tmp_path, record_property):
    """FastSAM-x-shaped (yolov8x-seg): raw outputs and instances at one setting (the torch bundle test_parity uses)."""
    bundle = export_bundle(x_checkpoint, 640, True)
    proto = build_fastsam(_model(x_checkpoint), imgsz=640, dynamic=True)
    diffs = _max_diff(_session(proto), _session(bundle / "fastsam.onnx"), _inputs(assets, 640, True))
    record_property("max_abs_diff", diffs)
    assert max(diffs) <= TOL, diffs
    ours, ref = FastSAM(native_bundle(bundle, proto, tmp_path / "x")), FastSAM(bundle)
    for name in IMAGES:
        a, b = ours.segment(assets / name, imgsz=640, **SETTINGS), ref.segment(assets / name, imgsz=640, **SETTINGS)
        assert len(a) == len(b) >= 10 and float(np.abs(a.boxes - b.boxes).max()) <= 0.01
        assert ((a.masks & b.masks).sum((1, 2)) / np.maximum((a.masks | b.masks).sum((1, 2)), 1)).min() >= 0.999


def test_precision_variants_equal_the_torch_ones(s_checkpoint, export_bundle, assets, tmp_path):
    """int8 (static QDQ, calibrated on the photographs) and fp16 variants made by :mod:`.precision` from the native
    graph and from the torch export compute the same (640, static)."""
    from fastsam_onnx.export import precision

    ref = export_bundle(s_checkpoint, 640, False) / "fastsam.onnx"
    native = tmp_path / "native.onnx"
    save(build_fastsam(_model(s_checkpoint), imgsz=640, dynamic=False), native)
    images = [assets / name for name in IMAGES]
    feeds = _inputs(assets, 640, False)
    for src in (native, ref):
        precision.to_int8(src, src.with_suffix(".int8.onnx") if src == native else tmp_path / "torch.int8.onnx",
                          images, (640, 640))
    assert _max_diff(_session(tmp_path / "native.int8.onnx"), _session(tmp_path / "torch.int8.onnx"), feeds) == [0, 0]
    pytest.importorskip("onnxconverter_common")
    for src, dst in ((native, tmp_path / "native.fp16.onnx"), (ref, tmp_path / "torch.fp16.onnx")):
        precision.to_fp16(src, dst, block=precision.float_casts(onnx.load(str(src))))
    assert max(_max_diff(_session(tmp_path / "native.fp16.onnx"), _session(tmp_path / "torch.fp16.onnx"), feeds)) <= TOL


def _dead_or_redundant(proto) -> list[str]:
    """Nodes whose outputs nobody reads, initializers nobody reads, Identity/Constant nodes."""
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    bad = [f"dead node {n.name}" for n in proto.graph.node if not any(o in used for o in n.output)]
    bad += [f"unused initializer {t.name}" for t in proto.graph.initializer if t.name not in used]
    return bad + [f"{n.op_type} {n.name}" for n in proto.graph.node if n.op_type in ("Identity", "Constant")]


@pytest.mark.parametrize("imgsz,dynamic", [(640, False), (1024, True)], ids=["640-static", "1024-dynamic"])
def test_simplified_as_built(s_checkpoint, export_bundle, imgsz, dynamic, record_property):
    """onnxsim finds nothing to remove (nodes and initializers: identical constants are shared as built), there is
    no dead node, Identity or Constant, and there are fewer nodes than in the torch bundle."""
    onnxsim = pytest.importorskip("onnxsim")
    proto = build_fastsam(_model(s_checkpoint), imgsz=imgsz, dynamic=dynamic)
    assert _dead_or_redundant(proto) == []
    simplified, ok = onnxsim.simplify(proto)
    assert ok
    assert len(simplified.graph.node) == len(proto.graph.node)
    assert len(simplified.graph.initializer) == len(proto.graph.initializer)
    torch_nodes = len(onnx.load(str(export_bundle(s_checkpoint, imgsz, dynamic) / "fastsam.onnx")).graph.node)
    record_property("nodes", {"native": len(proto.graph.node), "torch bundle": torch_nodes})
    assert len(proto.graph.node) <= torch_nodes
    onnx.checker.check_model(proto, full_check=True)  # shapes inferred through the whole graph


def test_named_as_the_torch_export(s_checkpoint, export_bundle):
    """The weights carry the torch export's initializer names and values (BatchNorm folded bit for bit as
    ``fuse_conv_bn_weights`` folds it), and :mod:`.precision` finds the same decoding tail and last convs."""
    from onnx import numpy_helper

    from fastsam_onnx.export import precision

    proto = build_fastsam(_model(s_checkpoint), imgsz=640, dynamic=False)
    ref = onnx.load(str(export_bundle(s_checkpoint, 640, False) / "fastsam.onnx"))
    theirs = {t.name: t for t in ref.graph.initializer if t.name.startswith("model.")}
    mine = {t.name: t for t in proto.graph.initializer}
    assert len(theirs) > 100
    for name, t in theirs.items():
        assert np.array_equal(numpy_helper.to_array(mine[name]), numpy_helper.to_array(t)), name
    assert precision.head_prefix(proto) == precision.head_prefix(ref) == "/model.22/"
    for last in (False, True):
        ours, refs = (precision.tail_nodes(m, last_convs=last) for m in (proto, ref))
        convs = [n.name for n in proto.graph.node if n.name in ours and n.op_type == "Conv"]
        ref_convs = [n.name for n in ref.graph.node if n.name in refs and n.op_type == "Conv"]
        assert sorted(convs) == sorted(ref_convs) and len(convs) == (9 if last else 0)
    ops = {n.op_type for n in proto.graph.node if n.name in precision.tail_nodes(proto)}
    assert {"Softmax", "MatMul", "Sigmoid"} <= ops and "Conv" not in ops


def to_record(m) -> Record:
    """A torch module tree as the Record tree read_checkpoint gives (tensors as numpy arrays, plain attributes)."""
    state: dict = {}
    for k, v in m.__dict__.items():
        if k in ("_parameters", "_buffers"):
            state[k] = {n: t.detach().numpy().copy() for n, t in v.items() if t is not None}
        elif k == "_modules":
            state[k] = {n: None if c is None else to_record(c) for n, c in v.items()}
        elif isinstance(v, torch.Tensor):
            state[k] = v.detach().numpy().copy()
        elif v is None or isinstance(v, (bool, int, float, str, list, tuple, dict)):
            state[k] = v
    return Record(type(m).__module__, type(m).__name__, (), state)


def _walk(rec: Record):
    yield rec
    for child in rec.children().values():
        if isinstance(child, Record):
            yield from _walk(child)


def test_old_module_paths_and_fused_convs(s_checkpoint, assets):
    """Classes match by name (8.0-series checkpoints pickled ``ultralytics.nn.modules.Conv``), and a checkpoint
    whose convs are already fused (conv.bias, no bn) gives the same weights and outputs."""
    from ultralytics.nn.tasks import load_checkpoint

    reference = build_fastsam(_model(s_checkpoint), imgsz=640, dynamic=True)
    net, _ = load_checkpoint(str(s_checkpoint))
    old = to_record(net)
    for rec in _walk(old):
        rec.module = "ultralytics.nn.modules" if rec.module.startswith("ultralytics") else "torch.nn.modules"
    assert build_fastsam(old, imgsz=640, dynamic=True) == reference
    fused = net.float().fuse(verbose=False)
    assert not any(type(m).__name__ == "BatchNorm2d" for m in fused.modules())
    proto = build_fastsam(to_record(fused), imgsz=640, dynamic=True)
    mine = {t.name: t.raw_data for t in proto.graph.initializer}
    assert all(mine[t.name] == t.raw_data for t in reference.graph.initializer if t.name.endswith((".weight", ".bias")))
    assert _max_diff(_session(proto), _session(reference), _inputs(assets, 640, True)) == [0.0, 0.0]


def test_static_batch(s_checkpoint, assets):
    """A static graph of batch 2: each item as the batch-1 graph computes it; bad static options refused."""
    from fastsam_onnx.errors import BadArgumentError

    for options in (dict(imgsz=650), dict(batch=0), dict(opset=13)):
        with pytest.raises(BadArgumentError):
            build_fastsam(_model(s_checkpoint), dynamic=False, **options)
    x = _inputs(assets, 640, False)
    one, two = (_session(build_fastsam(_model(s_checkpoint), imgsz=640, dynamic=False, batch=n)) for n in (1, 2))
    assert two.get_inputs()[0].shape == [2, 3, 640, 640] and two.get_outputs()[0].shape == [2, 37, 8400]
    both = two.run(None, {"images": np.concatenate([x["bus.jpg"], x["zidane.jpg"]])})
    for i, name in enumerate(IMAGES):
        for got, want in zip(both, one.run(None, {"images": x[name]})):
            assert float(np.abs(got[i] - want[0]).max()) <= TOL


def _saved(tmp_path: Path, net, name: str) -> Record:
    """``net`` saved as an ultralytics checkpoint (fp16 module tree) and read back without torch."""
    path = tmp_path / f"{name}.pt"
    torch.save({"model": net.half(), "ema": None, "train_args": {}}, path)
    return read_checkpoint(path)["model"]


@pytest.mark.parametrize("case", ["detect", "classify", "nc80", "yolo11", "not-a-model", "bad-shape", "bad-head",
                                  "odd-record"])
def test_unknown_architectures_are_one_line_errors(case, tmp_path, s_checkpoint):
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, SegmentationModel

    expected = {"detect": "detection model", "classify": "classifier", "nc80": "80 classes", "yolo11": "C3k2",
                "not-a-model": "not an ultralytics model", "bad-shape": "model.1.conv.weight",
                "bad-head": "model.22.cv3.0", "odd-record": "unexpected checkpoint structure"}[case]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if case == "detect":
            model = _saved(tmp_path, DetectionModel("yolov8n.yaml", nc=1, verbose=False), case)
        elif case == "classify":
            model = _saved(tmp_path, ClassificationModel("yolov8n-cls.yaml", nc=1, verbose=False), case)
        elif case == "nc80":
            model = _saved(tmp_path, SegmentationModel("yolov8n-seg.yaml", nc=80, verbose=False), case)
        elif case == "yolo11":
            model = _saved(tmp_path, SegmentationModel("yolo11n-seg.yaml", nc=1, verbose=False), case)
        elif case == "not-a-model":
            model = Record("collections", "OrderedDict", (), {"weight": np.zeros(3, np.float16)})
        else:
            model = read_checkpoint(s_checkpoint)["model"]
            if case == "bad-shape":
                conv = model.model[1].conv
                conv.state["_parameters"]["weight"] = conv.weight[:, :5]
            elif case == "odd-record":
                model.model[2].state["_modules"]["cv1"] = 5
            else:
                del model.model[22].cv3[0].state["_modules"]["2"]
    with pytest.raises(BadModelError) as e:
        build_fastsam(model, imgsz=640, dynamic=True)
    message = str(e.value)
    assert "\n" not in message and expected in message, message


def test_builds_without_torch(s_checkpoint, tmp_path):
    """Reading, building and saving import neither torch nor ultralytics (both blocked in a child process)."""
    code = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'ultralytics'): sys.modules[m] = None\n"
        "from fastsam_onnx.export.checkpoint import read_checkpoint\n"
        "from fastsam_onnx.export.native_fastsam import build_fastsam\n"
        "from fastsam_onnx.export.onnx_graph import save\n"
        f"ckpt = read_checkpoint({str(s_checkpoint)!r})\n"
        f"save(build_fastsam(ckpt['model'], imgsz=1024, dynamic=True), {str(tmp_path / 'm.onnx')!r})\n"
        "assert not [m for m in ('torch', 'ultralytics') if sys.modules.get(m) is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert onnx.load(str(tmp_path / "m.onnx")).graph.output[1].name == "output1"
