"""The demo CLIP's text graph stores its token embedding as fp16 (tools/fp16_storage.py): smaller, and exact.

The stored fp16 tensor must be the checkpoint's own (clip-demo.pt, saved in fp16, read with torch), bit for bit;
the fp32 graph the export made is rebuilt here from the shipped one by widening that tensor back into the
initializer and dropping the Cast, and both graphs must give bit-identical embeddings for every token of the
vocabulary. The tool itself converts only tensors whose values fp16 holds exactly, and a second run changes
nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastsam_onnx.manifest import sha256_file
from fastsam_onnx.models import demo_clip_bundle

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fp16_storage  # noqa: E402  (tools/, on sys.path through conftest)

TEXT = demo_clip_bundle() / "clip_text.onnx"
#: 13.14 MB with the token embedding in fp32 (49408 x 64 x 4 bytes), 6.81 MB in fp16
TEXT_MAX_MB = 7.5


def _fp32_graph(model):
    """The shipped graph with each fp16-stored tensor widened back to fp32 and its Cast removed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    casts = {n.input[0]: n for n in g.node if n.op_type == "Cast" and n.input[0].endswith(".fp16")}
    for i, init in enumerate(g.initializer):
        if init.name in casts:
            wide = numpy_helper.to_array(init).astype(np.float32)
            g.initializer[i].CopyFrom(numpy_helper.from_array(wide, casts[init.name].output[0]))
    keep = [n for n in g.node if n.name not in {c.name for c in casts.values()}]
    del g.node[:]
    g.node.extend(keep)
    return model, len(casts)


def _tokens(rng) -> np.ndarray:
    """Every token id of the vocabulary, in random 75-token texts between the start and end tokens."""
    ids = rng.permutation(49406)
    n = -(-len(ids) // 75)
    ids = np.concatenate([ids, rng.integers(0, 49406, n * 75 - len(ids))]).reshape(n, 75)
    return np.concatenate([np.full((n, 1), 49406), ids, np.full((n, 1), 49407)], axis=1).astype(np.int64)


def test_shipped_text_graph_is_compact_and_exact():
    assert TEXT.stat().st_size < TEXT_MAX_MB * 1e6, TEXT.stat().st_size
    manifest = json.loads((demo_clip_bundle() / "manifest.json").read_text())
    assert manifest["sha256"]["text_onnx"] == sha256_file(TEXT)
    model = onnx.load(str(TEXT))
    emb = next(t for t in model.graph.initializer if t.name == "clip_model.token_embedding.weight.fp16")
    assert emb.data_type == TensorProto.FLOAT16 and list(emb.dims) == [49408, 64]
    torch = pytest.importorskip("torch")
    state = torch.load(demo_clip_bundle() / "clip-demo.pt", map_location="cpu")
    ckpt = state["token_embedding.weight"]
    assert ckpt.dtype == torch.float16 and ckpt.numpy().tobytes() == numpy_helper.to_array(emb).tobytes()
    wide, n = _fp32_graph(model)
    assert n == 1 and len(wide.SerializeToString()) > 13e6  # the export's size: the check compares what it should
    tokens = _tokens(np.random.default_rng(0))
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        out = []
        for m in (model, wide):
            s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out.append(np.concatenate([s.run(None, {"tokens": tokens[i:i + 128]})[0] for i in range(0, len(tokens), 128)]))
        assert out[0].shape == (len(tokens), 64) and out[0].tobytes() == out[1].tobytes(), level


def test_tool_converts_only_exact_tensors_once(tmp_path):
    rng = np.random.default_rng(1)
    exact = rng.normal(0, 0.02, (600, 512)).astype(np.float16).astype(np.float32)  # 1.2 MB, fp16 values
    inexact = exact.copy()
    inexact[3, 7] += np.float32(1e-7)  # one value fp16 cannot hold
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [None])
    ys = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [None, 512]) for i in range(2)]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["exact", "x"], ["y0"]), helper.make_node("Gather", ["inexact", "x"], ["y1"])],
        "g", [x], ys, [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact")])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    before = path.stat().st_size
    assert fp16_storage.store_fp16(path) == ["exact"]
    assert path.stat().st_size < before - 0.5e6
    digest = sha256_file(path)
    assert fp16_storage.store_fp16(path) == [] and sha256_file(path) == digest
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    idx = np.arange(600, dtype=np.int64)
    y0, y1 = s.run(None, {"x": idx})
    assert y0.tobytes() == exact.tobytes() and y1.tobytes() == inexact.tobytes()
