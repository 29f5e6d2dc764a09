"""Execution providers: resolution (a pure function), strictness, the post-check, doctor (io binding:
test_io_binding.py)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest

from fastsam_onnx import FastSAM, ProviderError
from fastsam_onnx import session as session_mod
from fastsam_onnx.cli import main
from fastsam_onnx.providers import CPU, CUDA, TENSORRT, check_providers, ort_package, provider_name, resolve_providers
from fastsam_onnx.providers import session_options, thread_counts
from fastsam_onnx.session import OnnxSession

onnx = pytest.importorskip("onnx")

REAL_SESSION = ort.InferenceSession
CPU_ONLY = ["AzureExecutionProvider", CPU]
CUDA_CPU = [CUDA, CPU]
ALL_GPU = [TENSORRT, CUDA, CPU]
NO_ENV: dict = {}


def names(specs) -> list[str]:
    return [provider_name(s) for s in specs]


def options(specs, name) -> dict:
    return next(s[1] for s in specs if isinstance(s, tuple) and s[0] == name)


def resolve(requested, available, **kw):
    kw.setdefault("env", NO_ENV)
    kw.setdefault("package", "onnxruntime")
    return resolve_providers(requested, available, **kw)


# ---------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(
    "available, expected",
    [(CPU_ONLY, [CPU]), (CUDA_CPU, [CUDA, CPU]), (ALL_GPU, [TENSORRT, CUDA, CPU]), ([TENSORRT, CPU], [TENSORRT, CPU])],
    ids=["cpu-only", "cuda+cpu", "trt+cuda+cpu", "trt+cpu"],
)
def test_auto_takes_the_best_available_without_warning(available, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert names(resolve("auto", available)) == expected
        assert names(resolve(None, available)) == expected


def test_single_words():
    assert resolve("cpu", ALL_GPU) == [CPU]
    assert names(resolve("cuda", ALL_GPU)) == [CUDA, CPU]
    assert names(resolve("tensorrt", ALL_GPU)) == [TENSORRT, CUDA, CPU]
    assert names(resolve("TRT", ALL_GPU)) == [TENSORRT, CUDA, CPU]
    assert names(resolve("CUDA", CUDA_CPU)) == [CUDA, CPU]


def test_default_options():
    specs = resolve("tensorrt", ALL_GPU, device_id=1, cache_dir="/tmp/engines")
    trt = options(specs, TENSORRT)
    assert trt == {
        "device_id": 1,
        "trt_fp16_enable": True,
        "trt_max_workspace_size": 4 << 30,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": "/tmp/engines",
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": "/tmp/engines",
    }
    assert options(specs, CUDA) == {"device_id": 1, "cudnn_conv_algo_search": "EXHAUSTIVE"}
    assert specs[-1] == CPU  # CPU carries no options: threads go through SessionOptions


def test_explicit_lists_keep_their_order_and_add_nothing():
    assert names(resolve([CPU, CUDA], CUDA_CPU)) == [CPU, CUDA]
    assert names(resolve(["cuda"], CUDA_CPU)) == [CUDA]
    assert names(resolve("cuda,cpu", CUDA_CPU)) == [CUDA, CPU]
    assert names(resolve(f"{CUDA}, {CPU}", CUDA_CPU)) == [CUDA, CPU]
    assert names(resolve([CUDA, "cuda", CPU], CUDA_CPU)) == [CUDA, CPU]  # duplicates dropped


def test_name_option_pairs_lay_over_the_defaults():
    specs = resolve([(CUDA, {"device_id": 3, "arena_extend_strategy": "kSameAsRequested"}), CPU], CUDA_CPU)
    assert options(specs, CUDA) == {"device_id": 3, "cudnn_conv_algo_search": "EXHAUSTIVE", "arena_extend_strategy": "kSameAsRequested"}
    assert resolve((TENSORRT, {"trt_fp16_enable": False}), ALL_GPU)[0][1]["trt_fp16_enable"] is False  # a single pair
    other = resolve([("OpenVINOExecutionProvider", {"device_type": "CPU"})], ["OpenVINOExecutionProvider", CPU])
    assert other == [("OpenVINOExecutionProvider", {"device_type": "CPU"})]


@pytest.mark.parametrize("bad", ["gpu", "", " , ", "cuda,gpu", ["nvidia"], [("cuda", "not options")], [42], []])
def test_malformed_requests_are_errors_even_without_strict(bad):
    with pytest.raises(ProviderError):
        resolve(bad, ALL_GPU)


def test_unavailable_provider_warns_and_falls_back():
    with pytest.warns(RuntimeWarning, match=r"CUDAExecutionProvider is not offered.*GPU build is onnxruntime-gpu: pip uninstall -y onnxruntime && pip install 'fastsam-onnx\[gpu\]'"):
        assert resolve("cuda", CPU_ONLY) == [CPU]
    with pytest.warns(RuntimeWarning, match="TensorrtExecutionProvider"):
        assert names(resolve("tensorrt", CUDA_CPU)) == [CUDA, CPU]
    with pytest.warns(RuntimeWarning, match="FooExecutionProvider"):
        assert resolve(["FooExecutionProvider", CPU], CPU_ONLY) == [CPU]
    with pytest.warns(RuntimeWarning):
        assert resolve([CUDA], CPU_ONLY) == [CPU]  # nothing left: CPU rather than an empty list


def test_unavailable_provider_is_logged(caplog):
    """The fallback is reported once, as a warning; logging gets it at DEBUG level only (a WARNING record
    as well printed it twice in a plain script: once by logging's last-resort handler, once as a warning)."""
    with warnings.catch_warnings(record=True) as got, caplog.at_level("DEBUG", logger="fastsam_onnx.providers"):
        warnings.simplefilter("always")
        resolve("cuda", CPU_ONLY)
    assert len(got) == 1 and issubclass(got[0].category, RuntimeWarning)
    assert "onnxruntime-gpu" in caplog.text
    assert all(r.levelname == "DEBUG" for r in caplog.records)


def test_strict_names_the_reason():
    with pytest.raises(ProviderError) as e:
        resolve("cuda", CPU_ONLY, strict=True)
    msg = str(e.value)
    assert "CUDAExecutionProvider is not offered by this onnxruntime build" in msg
    assert "onnxruntime package installed" in msg  # the one recipe of extras.GPU_SWITCH (README, docs/gpu.md, doctor)
    assert msg.endswith("the NVIDIA GPU build is onnxruntime-gpu: pip uninstall -y onnxruntime && "
                        "pip install 'fastsam-onnx[gpu]')")
    with pytest.raises(ProviderError, match="TensorrtExecutionProvider.*the CPU package onnxruntime is installed too.*"
                                            r"pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'fastsam-onnx\[gpu\]'"):
        resolve("tensorrt", CUDA_CPU, strict=True, package="onnxruntime-gpu")
    with pytest.raises(ProviderError, match=r"\(none package installed; the NVIDIA GPU build is onnxruntime-gpu: "
                                            r"pip install 'fastsam-onnx\[gpu\]'\)"):
        resolve("cuda", CPU_ONLY, strict=True, package="none")
    with pytest.raises(ProviderError, match="it offers OpenVINOExecutionProvider"):
        resolve(["FooExecutionProvider"], ["OpenVINOExecutionProvider", CPU], strict=True)
    assert names(resolve("auto", CPU_ONLY, strict=True)) == [CPU]  # auto never fails


def test_environment_overrides():
    env = {
        "FASTSAM_ONNX_PROVIDERS": "cuda",
        "FASTSAM_ONNX_DEVICE_ID": "2",
        "FASTSAM_ONNX_TRT_FP16": "0",
        "FASTSAM_ONNX_TRT_WORKSPACE": "2G",
        "FASTSAM_ONNX_CUDNN_ALGO": "heuristic",
        "FASTSAM_ONNX_CACHE": "/data/cache",
    }
    specs = resolve(None, ALL_GPU, env=env)
    assert names(specs) == [CUDA, CPU]
    assert options(specs, CUDA) == {"device_id": 2, "cudnn_conv_algo_search": "HEURISTIC"}
    trt = options(resolve("tensorrt", ALL_GPU, env=env), TENSORRT)
    assert trt["device_id"] == 2 and trt["trt_fp16_enable"] is False and trt["trt_max_workspace_size"] == 2 << 30
    assert trt["trt_engine_cache_path"] == "/data/cache/tensorrt"
    # an explicit argument wins over its variable
    assert resolve("cpu", ALL_GPU, env=env) == [CPU]
    assert options(resolve(None, ALL_GPU, env=env, device_id=0), CUDA)["device_id"] == 0
    assert names(resolve(None, ALL_GPU, env={"FASTSAM_ONNX_PROVIDERS": f"{CPU}"})) == [CPU]
    assert resolve(None, ALL_GPU, env={"FASTSAM_ONNX_TRT_WORKSPACE": "1073741824"})[0][1]["trt_max_workspace_size"] == 1 << 30


@pytest.mark.parametrize(
    "var, value",
    [
        ("FASTSAM_ONNX_DEVICE_ID", "first"),
        ("FASTSAM_ONNX_DEVICE_ID", "-1"),
        ("FASTSAM_ONNX_TRT_FP16", "maybe"),
        ("FASTSAM_ONNX_TRT_WORKSPACE", "lots"),
        ("FASTSAM_ONNX_TRT_WORKSPACE", "0"),
        ("FASTSAM_ONNX_TRT_WORKSPACE", "nan"),
        ("FASTSAM_ONNX_TRT_WORKSPACE", "inf"),
        ("FASTSAM_ONNX_TRT_WORKSPACE", "2T"),
        ("FASTSAM_ONNX_CUDNN_ALGO", "fastest"),
        ("FASTSAM_ONNX_PROVIDERS", "gpu"),
    ],
)
def test_bad_environment_values_name_the_variable(var, value):
    with pytest.raises(ProviderError, match=var):
        resolve(None, ALL_GPU, env={var: value})


def test_thread_counts_and_session_options():
    assert thread_counts({}) == (None, None)
    assert thread_counts({"FASTSAM_ONNX_THREADS": "4"}) == (4, None)
    assert thread_counts({"FASTSAM_ONNX_THREADS": "4,2"}) == (4, 2)
    with pytest.raises(ProviderError, match="FASTSAM_ONNX_THREADS"):
        thread_counts({"FASTSAM_ONNX_THREADS": "many"})
    so = session_options(env={"FASTSAM_ONNX_THREADS": "3,1"})
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (3, 1)
    so = session_options(2, env={"FASTSAM_ONNX_THREADS": "3,1"})
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (2, 1)
    assert session_options(env={}).intra_op_num_threads == 0  # onnxruntime's choice


# ---------------------------------------------------------------------------------------------- post-check


def test_check_providers_warns_or_raises_with_the_missing_libraries(monkeypatch):
    """It names the libraries the build needs (read from it: tests/test_gpu_install.py) that do not load here."""
    import fastsam_onnx.providers as P

    needs = {CUDA: ["libcudart.so.99", "libc.so.6", "libcublasLt.so.99", "libcudnn.so.77"]}
    monkeypatch.setattr(P, "provider_libraries", lambda: needs)
    monkeypatch.setattr(P, "build_info", lambda: {"cuda_version": "99.1"})
    assert check_providers([CPU], [CPU]) == []
    with pytest.warns(RuntimeWarning, match="did not enable CUDAExecutionProvider"):
        assert check_providers([(CUDA, {}), CPU], [CPU]) == [CUDA]
    with pytest.raises(ProviderError) as e:
        check_providers([(CUDA, {}), CPU], [CPU], strict=True, what="fastsam.onnx")
    msg = str(e.value)
    assert "fastsam.onnx" in msg and "fastsam-onnx doctor" in msg
    assert ("cannot load CUDA 99 runtime (libcudart.so.99), cuBLASLt (CUDA 99) (libcublasLt.so.99), "
            "cuDNN 77 (libcudnn.so.77);") in msg and "libc.so.6" not in msg
    with pytest.raises(ProviderError, match=r"TensorrtExecutionProvider for the model \(it kept CPUExecutionProvider\); see"):
        check_providers([(TENSORRT, {}), CPU], [CPU], strict=True)  # nothing read for it: no library named


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A FastSAM-shaped stand-in: input images (1, 3, 32, 32) → output0 (1, 37, 4), output1 (1, 32, 8, 8)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w0 = numpy_helper.from_array(rng.normal(size=(37, 3, 16, 16)).astype(np.float32), "w0")
    w1 = numpy_helper.from_array(rng.normal(size=(32, 3, 4, 4)).astype(np.float32), "w1")
    shape = numpy_helper.from_array(np.array([1, 37, 4], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["images", "w0"], ["c0"], strides=[16, 16]),
        helper.make_node("Reshape", ["c0", "shape"], ["output0"]),
        helper.make_node("Conv", ["images", "w1"], ["output1"], strides=[4, 4]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 37, 4]),
         helper.make_tensor_value_info("output1", TensorProto.FLOAT, [1, 32, 8, 8])],
        [w0, w1, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tiny") / "fastsam.onnx"
    onnx.save(model, str(path))
    from fastsam_onnx.manifest import sha256_file

    manifest = {"format_version": 1, "kind": "fastsam", "imgsz": [32, 32], "sha256": {"onnx": sha256_file(path)}}
    (path.parent / "manifest.json").write_text(json.dumps(manifest))
    return path


class DroppingSession:
    """A real CPU session that claims whatever providers the test wants (as if CUDA were kept or dropped)."""

    kept: list[str] = [CPU]
    created: list = []

    def __init__(self, path, sess_options=None, providers=None):
        DroppingSession.created.append(providers)
        self._real = REAL_SESSION(path, sess_options=sess_options, providers=[CPU])

    def get_providers(self):
        return list(self.kept)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def fake_cuda_build(monkeypatch):
    """onnxruntime claims to offer CUDA; sessions are CPU sessions that report DroppingSession.kept."""
    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_mod.ort, "InferenceSession", DroppingSession)
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", "/nonexistent-cache-dir")
    DroppingSession.created = []
    DroppingSession.kept = [CPU]
    return DroppingSession


def test_session_post_check_warns_when_cuda_did_not_come_up(fake_cuda_build, tiny_onnx):
    with pytest.warns(RuntimeWarning, match="did not enable CUDAExecutionProvider for fastsam.onnx"):
        s = OnnxSession(tiny_onnx, "cuda")
    assert names(fake_cuda_build.created[0]) == [CUDA, CPU]
    assert s.providers == [CPU] and not s.use_io_binding
    assert names(s.requested) == [CUDA, CPU]


def test_session_post_check_strict_raises(fake_cuda_build, tiny_onnx):
    with pytest.raises(ProviderError, match="did not enable CUDAExecutionProvider"):
        OnnxSession(tiny_onnx, "cuda", strict=True)
    with pytest.raises(ProviderError, match="did not enable"):
        FastSAM(tiny_onnx.parent, providers="cuda", strict=True)


def test_fastsam_reports_what_onnxruntime_kept(fake_cuda_build, tiny_onnx):
    fake_cuda_build.kept = [CUDA, CPU]
    model = FastSAM(tiny_onnx.parent)  # auto
    assert model.providers == [CUDA, CPU] and model.session.use_io_binding
    fake_cuda_build.kept = [CPU]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FastSAM(tiny_onnx.parent, providers="cpu").providers == [CPU]
    assert names(fake_cuda_build.created[-1]) == [CPU]


def test_session_creation_failure_falls_back_to_cpu(monkeypatch, tiny_onnx):
    real = REAL_SESSION

    def failing(path, sess_options=None, providers=None):
        if any(provider_name(p) != CPU for p in providers):
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected\nmore lines")
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_mod.ort, "InferenceSession", failing)
    with pytest.warns(RuntimeWarning, match="no CUDA-capable device.*using CPUExecutionProvider"):
        s = OnnxSession(tiny_onnx, "cuda")
    assert s.providers == [CPU]
    with pytest.raises(ProviderError, match="no CUDA-capable device"):
        OnnxSession(tiny_onnx, "cuda", strict=True)


def test_corrupt_model_is_still_a_bad_model_error(tmp_path):
    from fastsam_onnx import BadModelError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BadModelError):
        OnnxSession(bad, "cpu")


def test_strict_cuda_on_a_cpu_build(tiny_onnx, monkeypatch):
    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: CPU_ONLY)
    monkeypatch.setattr("fastsam_onnx.providers.ort_package", lambda: "onnxruntime")
    with pytest.raises(ProviderError, match=r"onnxruntime-gpu: pip uninstall -y onnxruntime && pip install"):
        OnnxSession(tiny_onnx, "cuda", strict=True)
    with pytest.warns(RuntimeWarning, match=r"onnxruntime-gpu: pip uninstall -y onnxruntime && pip install"):
        assert OnnxSession(tiny_onnx, "cuda").providers == [CPU]


def test_trt_engine_cache_folder_per_model(fake_cuda_build, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: ALL_GPU)
    fake_cuda_build.kept = ALL_GPU
    s = OnnxSession(tiny_onnx, "tensorrt")
    cache = options(s.requested, TENSORRT)["trt_engine_cache_path"]
    assert cache.startswith(str(tmp_path / "cache" / "tensorrt" / "fastsam-"))
    assert (tmp_path / "cache" / "tensorrt").is_dir() and cache == options(s.requested, TENSORRT)["trt_timing_cache_path"]


# ---------------------------------------------------------------------------------------------- CLI


def test_doctor_reports_build_providers_libraries_and_timing(tiny_onnx, capsys):
    assert main(["doctor", "--model", str(tiny_onnx.parent), "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert f"onnxruntime {ort.__version__}" in out
    assert "available providers: " + ", ".join(ort.get_available_providers()) in out
    if ort_package() == "onnxruntime":  # the CPU build: how to get the GPU one (extras.GPU_SWITCH)
        assert ("GPU providers: none in this CPU build; for an NVIDIA GPU install the GPU build instead: "
                "pip uninstall -y onnxruntime && pip install 'fastsam-onnx[gpu]'") in out
    else:  # the GPU build: the libraries it needs (tests/test_gpu_install.py)
        assert "GPU libraries this build needs" in out
    assert "CPUExecutionProvider: ok — session.run median" in out and "1x3x32x32 float32" in out
    if CUDA not in ort.get_available_providers():
        assert "CUDAExecutionProvider: unavailable" in out


def test_doctor_without_a_demo_bundle(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("fastsam_onnx.models.demo_bundle", lambda: tmp_path / "demo")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "not built yet" in out and "available providers" in out


def test_doctor_bad_model_is_exit_2(tmp_path, capsys):
    assert main(["doctor", "--model", str(tmp_path / "nothing")]) == 2
    assert "model not found" in capsys.readouterr().err


def test_segment_providers_and_strict(tiny_onnx, tmp_path, monkeypatch, capsys):
    import cv2

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: CPU_ONLY)
    monkeypatch.setattr("fastsam_onnx.providers.ort_package", lambda: "onnxruntime")
    assert main(["segment", str(image), "--model", str(tiny_onnx.parent), "--providers", "cuda", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "fastsam-onnx segment: error: CUDAExecutionProvider is not offered" in err and "onnxruntime-gpu" in err
    assert main(["segment", str(image), "--model", str(tiny_onnx.parent), "--providers", "nvidia"]) == 2
    assert "unknown provider 'nvidia'" in capsys.readouterr().err
