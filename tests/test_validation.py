"""Numbers, types and manifests are validated everywhere: a wrong argument, manifest field or environment
value is a typed :class:`FastSAMError` naming it, before any big allocation or session is made."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import fastsam_onnx.session as session_mod
import fastsam_onnx.zoo as zoo_mod
from fastsam_onnx import FastSAM, Result
from fastsam_onnx.errors import BadArgumentError, BadModelError, ProviderError
from fastsam_onnx.manifest import UnverifiedModelWarning, sha256_file
from fastsam_onnx.models import demo_bundle
from fastsam_onnx.providers import CPU, max_threads, session_options

IMG = np.zeros((48, 64, 3), np.uint8)


@pytest.fixture(scope="module")
def model() -> FastSAM:
    return FastSAM(demo_bundle())


@pytest.fixture(scope="module")
def result(model) -> Result:
    r = model.segment(demo_bundle() / "example.jpg")
    assert len(r) >= 3
    return r


@pytest.fixture
def bundle(tmp_path):
    """A copy of the demo bundle (graph + manifest) whose manifest a test may edit."""
    out = tmp_path / "bundle"
    out.mkdir()
    for name in ("fastsam.onnx", "manifest.json"):
        shutil.copy(demo_bundle() / name, out / name)
    return out


def edit(bundle, **fields):
    m = json.loads((bundle / "manifest.json").read_text())
    for k, v in fields.items():
        if v is ...:
            m.pop(k, None)
        else:
            m[k] = v
    (bundle / "manifest.json").write_text(json.dumps(m))
    return m


def _dynamic_graph(path):
    """A tiny FastSAM-shaped graph with dynamic h, w (outputs (1, 37, A) and (1, 32, h/4, w/4), no detections)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w0 = numpy_helper.from_array(np.zeros((37, 3, 16, 16), np.float32), "w0")
    w1 = numpy_helper.from_array(np.zeros((32, 3, 4, 4), np.float32), "w1")
    shape = numpy_helper.from_array(np.array([1, 37, -1], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["images", "w0"], ["c0"], strides=[16, 16]),
        helper.make_node("Reshape", ["c0", "shape"], ["output0"]),
        helper.make_node("Conv", ["images", "w1"], ["output1"], strides=[4, 4]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_dynamic", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 37, "a"]),
         helper.make_tensor_value_info("output1", TensorProto.FLOAT, [1, 32, "ph", "pw"])],
        [w0, w1, shape],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture
def dynamic_bundle(tmp_path):
    out = tmp_path / "dyn"
    out.mkdir()
    onnx_path = _dynamic_graph(out / "fastsam.onnx")
    manifest = {"format_version": 1, "kind": "fastsam", "imgsz": 64, "stride": 32, "dynamic": True,
                "sha256": {"onnx": sha256_file(onnx_path)}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


# --- FastSAM(...) and segment(...) argument types ------------------------------------------------------


@pytest.mark.parametrize(
    "kw, what",
    [
        ({"model": 5}, "model"),
        ({"providers": 5}, "providers"),
        ({"max_pixels": "x"}, "max_pixels"),
        ({"max_pixels": True}, "max_pixels"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"max_pixels": 1.5}, "max_pixels"),
        ({"strict": "no"}, "strict"),
        ({"verify": 1}, "verify"),
        ({"clip": 5}, "clip"),
        ({"max_input_pixels": 0}, "max_input_pixels"),
    ],
)
def test_constructor_argument_types(kw, what):
    with pytest.raises(BadArgumentError, match=what):
        FastSAM(**{"model": demo_bundle(), **kw})


@pytest.mark.parametrize(
    "kw, what",
    [
        ({"conf": "0.5"}, "conf"),
        ({"conf": True}, "conf"),
        ({"conf": float("nan")}, "conf"),
        ({"conf": None}, "conf"),
        ({"iou": float("nan")}, "iou"),
        ({"iou": [0.5]}, "iou"),
        ({"iou": 2}, "iou"),
        ({"max_det": None}, "max_det"),
        ({"max_det": 1.5}, "max_det"),
        ({"max_det": True}, "max_det"),
        ({"max_det": "10"}, "max_det"),
        ({"imgsz": "abc"}, "imgsz"),
        ({"imgsz": True}, "imgsz"),
        ({"imgsz": [1, 2, 3]}, "imgsz"),
        ({"imgsz": (512.0, 512)}, "imgsz"),
        ({"imgsz": (0, 5)}, "imgsz"),
        ({"retina_masks": "no"}, "retina_masks"),
        ({"retina_masks": 1}, "retina_masks"),
        ({"point_mode": 5, "points": [1, 1]}, "point_mode"),
        ({"text_mode": "best", "texts": "a"}, "text_mode"),
    ],
)
def test_segment_argument_types(model, kw, what):
    with pytest.raises(BadArgumentError, match=what):
        model.segment(IMG, **kw)


def test_valid_numbers_still_work(model):
    assert isinstance(model.segment(IMG, conf=np.float32(0.5), iou=1, max_det=np.int64(5), imgsz=np.int64(512)), Result)
    assert isinstance(model.segment(IMG, imgsz=[512, 512], retina_masks=np.bool_(False)), Result)


def test_prompt_takes_a_result(model):
    with pytest.raises(BadArgumentError, match="Result"):
        model.prompt(IMG, bboxes=[0, 0, 5, 5])
    with pytest.raises(BadArgumentError, match="point_mode"):
        model.prompt(model.segment(IMG), points=[1, 1], point_mode=None)


# --- result indexing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [999, -999, 1.0, True, "0", None])
def test_mask_index(result, bad):
    with pytest.raises(BadArgumentError):
        result.mask(bad)


def test_negative_index_counts_from_the_end(result):
    n = len(result)
    assert np.array_equal(result.mask(-1), result.mask(n - 1))
    assert np.array_equal(result.mask(np.int64(1)), result.masks[1])


@pytest.mark.parametrize("bad", [[99], [-99], [0.5], [[0]], "a", [True, False], [None]])
def test_select_bad_indices(result, bad):
    with pytest.raises(BadArgumentError):
        result.select(bad)


def test_select_valid(result):
    n = len(result)
    keep = np.zeros(n, bool)
    keep[[0, 2]] = True
    assert np.array_equal(result.select(keep).boxes, result.boxes[[0, 2]])
    assert np.array_equal(result.select([-1, 0]).scores, result.scores[[n - 1, 0]])
    assert len(result.select([])) == 0 and len(result.select(np.zeros(0, np.int64))) == 0
    with pytest.raises(BadArgumentError, match="selected_by"):
        result.select([0, 1], [["a"]])


# --- repr and path -------------------------------------------------------------------------------------


def test_repr_is_a_short_summary(result):
    text = repr(result)
    assert text.startswith(f"Result({len(result)} instances, image 512x512, masks 512x512")
    assert "array" not in text and "timings" in text and len(text) < 300
    assert str(result) == text
    one = result.select([0], [["box:0"]])
    assert repr(one).startswith("Result(1 instance, ") and "selected_by=[box:0]" in repr(one)
    assert repr(result.select([])).startswith("Result(0 instances, ")


def test_to_json_reports_the_image_path(model, result):
    path = str(demo_bundle() / "example.jpg")
    assert result.path == path and result.to_json()["image"]["path"] == path
    assert result.to_json("other.jpg")["image"]["path"] == "other.jpg"  # an explicit argument wins
    assert result.select([0]).to_json()["image"]["path"] == path
    assert model.prompt(result, bboxes=[0, 0, 200, 200]).path == path
    assert model.prompt(result, points=[[100, 100]], point_mode="merge").path == path
    assert model.segment(demo_bundle() / "example.jpg").path == path  # a Path too, as a string
    assert model.segment(IMG).to_json()["image"]["path"] is None


# --- manifests as data ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("format_version", "x"), ("format_version", 1.5), ("format_version", -1), ("format_version", 0),
        ("format_version", True), ("format_version", 99),
        ("kind", 5),
        ("stride", 0), ("stride", "32"), ("stride", 7), ("stride", 48), ("stride", 1024), ("stride", 32.0),
        ("imgsz", [0, 5]), ("imgsz", "big"), ("imgsz", [1, 2, 3]), ("imgsz", 100000), ("imgsz", [512, 512.5]),
        ("imgsz", True),
        ("model_file", 5), ("model_file", ""), ("model_file", "../fastsam.onnx"), ("model_file", "/etc/passwd"),
        ("model_file", "sub/../../x.onnx"), ("model_file", "..\\x.onnx"),
        ("sha256", "abc"), ("sha256", ["x"]), ("sha256", {"onnx": "abc"}), ("sha256", {"onnx": 5}),
        ("sha256", {"onnx": "g" * 64}),
    ],
)
def test_bad_manifest_fields_name_the_field(bundle, field, value):
    edit(bundle, **{field: value})
    name = "format version" if value == 99 else field
    with pytest.raises(BadModelError, match=name):
        FastSAM(bundle)


def test_model_file_symlink_out_of_the_bundle(bundle, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle / "fastsam.onnx", outside)
    (bundle / "link.onnx").symlink_to(outside)
    edit(bundle, model_file="link.onnx")
    with pytest.raises(BadModelError, match="outside the bundle"):
        FastSAM(bundle)


def test_model_file_in_a_subfolder_of_the_bundle(bundle):
    (bundle / "sub").mkdir()
    (bundle / "fastsam.onnx").rename(bundle / "sub" / "graph.onnx")
    edit(bundle, model_file="sub/graph.onnx")
    assert FastSAM(bundle).onnx_path == bundle / "sub" / "graph.onnx"


@pytest.mark.parametrize("text", ["[1, 2]", '"fastsam"', "{not json", "\xff\xfe"])
def test_manifest_that_is_not_a_json_object(bundle, text):
    (bundle / "manifest.json").write_text(text, encoding="latin-1")
    with pytest.raises(BadModelError, match="manifest"):
        FastSAM(bundle)


def test_huge_and_deep_manifests(bundle):
    m = edit(bundle)
    m["padding"] = "x" * (2 << 20)
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadModelError, match="larger than"):
        FastSAM(bundle)
    for depth in (100, 100_000):
        m = edit(bundle, padding=...)
        text = json.dumps(m)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
        (bundle / "manifest.json").write_text(text)
        with pytest.raises(BadModelError, match="nested"):
            FastSAM(bundle)


def test_digest_is_compared_case_insensitively(bundle):
    digest = sha256_file(bundle / "fastsam.onnx")
    edit(bundle, sha256={"onnx": digest.upper()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FastSAM(bundle)
    edit(bundle, sha256={"onnx": ("0" * 63 + "A")})
    with pytest.raises(BadModelError, match="corrupt"):
        FastSAM(bundle)


def test_unverified_bundle_warns_once_per_load(bundle):
    edit(bundle, sha256=...)
    for _ in range(2):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            FastSAM(bundle)
        unverified = [w for w in got if issubclass(w.category, UnverifiedModelWarning)]
        assert len(unverified) == 1 and "unverified" in str(unverified[0].message)
        assert unverified[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FastSAM(bundle, verify=False)  # checking was switched off: nothing to warn about
    edit(bundle, sha256={"weights": "a" * 64})  # a digest, but not of the graph
    with pytest.warns(UnverifiedModelWarning):
        FastSAM(bundle)


# --- the network-input bound ---------------------------------------------------------------------------


def test_dynamic_imgsz_is_bounded(dynamic_bundle):
    model = FastSAM(dynamic_bundle)
    assert model.dynamic and model.imgsz == (64, 64)
    assert len(model.segment(IMG, imgsz=96)) == 0  # works (the tiny graph finds nothing)
    with pytest.raises(BadArgumentError, match="max_input_pixels"):
        model.segment(IMG, imgsz=100000)
    with pytest.raises(BadArgumentError, match="max_input_pixels"):
        model.segment(IMG, imgsz=(32, 10**7))
    small = FastSAM(dynamic_bundle, max_input_pixels=128 * 128)
    small.segment(IMG, imgsz=128)
    with pytest.raises(BadArgumentError, match="128 x 160"):
        small.segment(IMG, imgsz=(128, 129))  # padded to the stride: 128 x 160 > 128²


def test_bundle_above_the_bound_is_refused_at_load(dynamic_bundle, bundle):
    edit(dynamic_bundle, imgsz=[8192, 8200])
    with pytest.raises(BadModelError, match="manifest imgsz"):
        FastSAM(dynamic_bundle)
    with pytest.raises(BadModelError, match="static input shape"):
        FastSAM(bundle, max_input_pixels=512 * 512 - 1)
    FastSAM(bundle, max_input_pixels=512 * 512)


# --- threads -------------------------------------------------------------------------------------------


def test_thread_count_is_bounded_before_any_session(monkeypatch):
    created = []
    monkeypatch.setattr(session_mod.ort, "InferenceSession", lambda *a, **kw: created.append(a))
    monkeypatch.setenv("FASTSAM_ONNX_THREADS", "100000")
    with pytest.raises(ProviderError, match=rf"FASTSAM_ONNX_THREADS.*at most {max_threads()}"):
        FastSAM(demo_bundle())
    monkeypatch.setenv("FASTSAM_ONNX_THREADS", f"1,{max_threads() + 1}")
    with pytest.raises(ProviderError, match="FASTSAM_ONNX_THREADS"):
        FastSAM(demo_bundle())
    assert created == []


@pytest.mark.parametrize("bad", [100000, -1, 1.5, True, "4"])
def test_explicit_thread_counts_are_bounded(bad):
    with pytest.raises(BadArgumentError, match="intra_op_threads"):
        session_options(bad, env={})
    with pytest.raises(BadArgumentError, match="inter_op_threads"):
        session_options(None, bad, env={})


def test_thread_bound_allows_the_cpu_count():
    so = session_options(max_threads(), env={"FASTSAM_ONNX_THREADS": f"{max_threads()},1"})
    assert so.intra_op_num_threads == max_threads()


# --- provider fallback ---------------------------------------------------------------------------------


def test_provider_fallback_warns_once(caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA: nothing falls back")
    with warnings.catch_warnings(record=True) as got, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        model = FastSAM(demo_bundle(), providers="cuda")
    assert model.providers == [CPU]
    fallback = [w for w in got if issubclass(w.category, RuntimeWarning)]
    assert len(fallback) == 1 and "CUDAExecutionProvider" in str(fallback[0].message)
    assert fallback[0].filename == __file__
    assert not [r for r in caplog.records if "CUDAExecutionProvider" in r.getMessage()]  # not logged a second time


# --- a local path that shadows a zoo name --------------------------------------------------------------


def test_local_folder_shadowing_a_zoo_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zoo_mod, "_shadow_warned", set())
    shutil.copytree(demo_bundle(), tmp_path / "demo", ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
    with pytest.warns(UserWarning, match=r"\./demo is a local path; the zoo model"):
        model = FastSAM("demo")
    assert model.onnx_path.resolve() == (tmp_path / "demo" / "fastsam.onnx").resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FastSAM("demo")  # warned once
        FastSAM("./demo")  # a path, not a name: no warning
    (tmp_path / "fastsam-s").mkdir()
    with pytest.raises(BadModelError, match=r"names both a local path .*fastsam-s.* and the zoo model 'fastsam-s'"):
        FastSAM("fastsam-s")
