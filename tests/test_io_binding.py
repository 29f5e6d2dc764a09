"""Sessions with a GPU provider first run through onnxruntime's io binding (CPU input, CPU outputs); a CPU
session runs plainly. Faked bindings and a real CPU session that claims CUDA (test_providers.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from test_providers import DroppingSession, tiny_onnx  # noqa: F401  (fixture)

from fastsam_onnx import session as session_mod
from fastsam_onnx.providers import CPU, CUDA
from fastsam_onnx.session import OnnxSession, run_with_binding

# ---------------------------------------------------------------------------------------------- io binding


class FakeBinding:
    def __init__(self, log):
        self.log = log

    def bind_cpu_input(self, name, arr):
        self.log.append(("input", name, arr.flags["C_CONTIGUOUS"], arr.dtype))
        self.x = arr

    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None, buffer_ptr=None):
        self.log.append(("output", name, device_type))

    def get_outputs(self):
        class Value:
            def __init__(self, a):
                self.a = a

            def numpy(self):
                return self.a

        return [Value(self.x * 2), Value(self.x + 1)]


class FakeSession:
    """Only what run_with_binding needs: io_binding() and run_with_iobinding()."""

    def __init__(self):
        self.log = []

    def io_binding(self):
        return FakeBinding(self.log)

    def run_with_iobinding(self, binding):
        self.log.append(("run",))


def test_run_with_binding_binds_cpu_input_and_cpu_outputs():
    fake = FakeSession()
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    out = run_with_binding(fake, "images", x, ["output0", "output1"])
    assert fake.log == [
        ("input", "images", True, np.float32),
        ("output", "output0", "cpu"),
        ("output", "output1", "cpu"),
        ("run",),
    ]
    np.testing.assert_array_equal(out[0], x * 2)
    np.testing.assert_array_equal(out[1], x + 1)


def test_gpu_first_session_runs_through_the_binding(tiny_onnx, monkeypatch):
    """CUDA first → io binding (on a real CPU session here: same numbers as a plain run); CPU → plain run."""
    x = np.random.default_rng(1).random((1, 3, 32, 32))[:, :, ::-1]  # float64, not contiguous
    calls = []
    real = session_mod.run_with_binding
    monkeypatch.setattr(session_mod, "run_with_binding", lambda *a: calls.append(a[1]) or real(*a))
    plain = OnnxSession(tiny_onnx, "cpu")
    expected = plain.run(x)
    assert not plain.use_io_binding and calls == []
    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_mod.ort, "InferenceSession", DroppingSession)
    monkeypatch.setattr(DroppingSession, "kept", [CUDA, CPU])
    bound = OnnxSession(tiny_onnx, "cuda")
    assert bound.use_io_binding
    got = bound.run(x)
    assert calls == ["images"]
    for a, b in zip(got, expected):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="needs CUDAExecutionProvider")
def test_real_cuda_session_matches_cpu(tiny_onnx):
    x = np.random.default_rng(2).random((1, 3, 32, 32)).astype(np.float32)
    gpu = OnnxSession(tiny_onnx, "cuda", strict=True)
    assert gpu.providers[0] == CUDA and gpu.use_io_binding
    for a, b in zip(gpu.run(x), OnnxSession(tiny_onnx, "cpu").run(x)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
