"""Graph rewrites of the export stage (export/rewrite.py) change no output value."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastsam_onnx.export.rewrite import dfl_last_axis, upsample_as_conv  # noqa: E402


def _dfl_graph(bins: int = 16, conv_kwargs: dict | None = None, bias: bool = False) -> "onnx.ModelProto":
    """The DFL of ultralytics' exported head: (1, 4·bins, A) → (1, 4, A)."""
    inits = {
        "shape4": np.array([1, 4, bins, -1], np.int64),
        "shape3": np.array([1, 4, -1], np.int64),
        "w": np.arange(bins, dtype=np.float32).reshape(1, bins, 1, 1),
        "b": np.zeros(1, np.float32),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "shape4"], ["r"], name="/model.22/dfl/Reshape"),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3], name="/model.22/dfl/Transpose"),
        helper.make_node("Softmax", ["t"], ["p"], axis=1, name="/model.22/dfl/Softmax"),
        helper.make_node("Conv", ["p", "w"] + (["b"] if bias else []), ["c"], name="/model.22/dfl/conv/Conv",
                         **(conv_kwargs or {})),
        helper.make_node("Reshape", ["c", "shape3"], ["y"], name="/model.22/dfl/Reshape_1"),
    ]
    graph = helper.make_graph(
        nodes, "dfl", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4 * bins, "anchors"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, "anchors"])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
        value_info=[  # shapes as onnxsim leaves them: stale after the rewrite unless removed
            helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, bins, 4, "anchors"]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, bins, 4, "anchors"]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1, 4, "anchors"]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("anchors", [1, 7, 8400, 16128])
def test_dfl_rewrite_is_exact(anchors):
    x = (np.random.default_rng(anchors).standard_normal((1, 64, anchors)) * 4).astype(np.float32)
    model = _dfl_graph()
    before = _run(model, x)
    assert dfl_last_axis(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "Conv" not in ops and "MatMul" in ops
    assert {i.name for i in model.graph.initializer} == {"shape4", "shape3", "w_column", "b"}
    after = _run(model, x)
    assert after.shape == (1, 4, anchors)
    np.testing.assert_array_equal(after, before)  # bit for bit
    assert dfl_last_axis(model) == 0  # idempotent: nothing left to rewrite


@pytest.mark.parametrize("variant", [{"bias": True}, {"conv_kwargs": {"strides": [2, 2]}}])
def test_other_patterns_are_left_alone(variant):
    model = _dfl_graph(**variant)
    before = model.SerializeToString()
    assert dfl_last_axis(model) == 0
    assert model.SerializeToString() == before


def _upsample_graph(cin: int = 8, cout: int = 6, bias: bool = True, **attrs) -> "onnx.ModelProto":
    """The prototypes' upsampling as ultralytics exports it: ConvTranspose 2 × 2, stride 2."""
    rng = np.random.default_rng(cin * cout)
    kernel = attrs.pop("kernel", 2)
    inits = {"w": rng.standard_normal((cin, cout, kernel, kernel)).astype(np.float32),
             "b": rng.standard_normal(cout).astype(np.float32)}
    attrs = {"strides": [2, 2], "kernel_shape": [kernel, kernel], **attrs}
    node = helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"], name="/model.22/proto/upsample/ConvTranspose", **attrs)
    graph = helper.make_graph(
        [node], "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, "h2", "w2"])],
        [numpy_helper.from_array(v, k) for k, v in inits.items() if bias or k == "w"],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (32, 24)])
def test_upsample_rewrite_matches_conv_transpose(bias, hw):
    x = np.random.default_rng(hw[0]).standard_normal((1, 8, *hw)).astype(np.float32)
    model = _upsample_graph(bias=bias)
    before = _run(model, x)
    assert upsample_as_conv(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "DepthToSpace"]
    assert {i.name for i in model.graph.initializer} == {"w_as_conv1x1"} | ({"b_as_conv1x1"} if bias else set())
    after = _run(model, x)
    assert after.shape == before.shape == (1, 6, 2 * hw[0], 2 * hw[1])
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)  # the same sums (measured bit-equal on FastSAM-s)


@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]}, {"kernel": 3}, {"strides": [1, 1]}, {"group": 2}])
def test_other_upsamplings_are_left_alone(attrs):
    model = _upsample_graph(**attrs)
    before = model.SerializeToString()
    assert upsample_as_conv(model) == 0
    assert model.SerializeToString() == before
