"""Graph rewrites applied after onnxsim: the same computation in a form onnxruntime runs faster.

:func:`dfl_last_axis` — the head's DFL (distribution focal loss decoding) exports as
``Reshape(1, 4, 16, A) → Transpose(0, 2, 1, 3) → Softmax(axis=1) → Conv(1×1, weights 0..15)``. onnxruntime
computes a softmax over a non-last axis by transposing the whole tensor to the last axis and back, which
took 11 ms of a 280 ms FastSAM-s run at 1024 × 768 on a 2-core Xeon. Transposing to ``(1, 4, A, 16)``
instead, the softmax runs over the last axis and the 1×1 conv becomes a ``MatMul`` with the (16, 1)
weight column: 1.6 ms, and the same numbers (the same products, summed in the same order).

:func:`upsample_as_conv` — the prototypes' 2 × 2 stride-2 ``ConvTranspose`` as a 1 × 1 ``Conv`` + ``DepthToSpace``:
7 ms less in fp32 and an int8 kernel in quantized graphs (see its docstring).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dfl_last_axis", "upsample_as_conv"]


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _replace_node(graph, old, new: list, inits: dict) -> None:
    """Put the nodes ``new`` where ``old`` was and drop the initializers only ``old`` read."""
    position = list(graph.node).index(old)
    graph.node.remove(old)
    for node in reversed(new):
        graph.node.insert(position, node)
    for name in old.input:
        if name in inits and not _consumers(graph, name):
            graph.initializer.remove(inits[name])


def dfl_last_axis(model) -> int:
    """Rewrite every DFL softmax of ``model`` (an onnx ModelProto, changed in place) to run over the last
    axis (see the module docstring); returns how many were rewritten (0 when the pattern is absent)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    done = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"), -1)
        transpose = producer.get(softmax.input[0])
        users = _consumers(graph, softmax.output[0])
        if axis != 1 or transpose is None or transpose.op_type != "Transpose" or len(users) != 1:
            continue
        perm = next((list(helper.get_attribute_value(a)) for a in transpose.attribute if a.name == "perm"), None)
        conv = users[0]
        if perm != [0, 2, 1, 3] or len(_consumers(graph, transpose.output[0])) != 1:
            continue
        if conv.op_type != "Conv" or len(conv.input) != 2 or conv.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[conv.input[1]])
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[2:] != (1, 1):
            continue
        if any(helper.get_attribute_value(a) not in ([1, 1], [0, 0, 0, 0], 1) for a in conv.attribute
               if a.name in ("strides", "pads", "dilations", "group")):
            continue
        for a in transpose.attribute:
            if a.name == "perm":
                a.CopyFrom(helper.make_attribute("perm", [0, 1, 3, 2]))
        for a in softmax.attribute:
            if a.name == "axis":
                a.CopyFrom(helper.make_attribute("axis", 3))
        column = conv.input[1] + "_column"
        graph.initializer.append(numpy_helper.from_array(w.reshape(w.shape[1], 1).astype(w.dtype), column))
        matmul = helper.make_node("MatMul", [softmax.output[0], column], list(conv.output), name=conv.name.rsplit("/", 1)[0] + "/MatMul")
        changed = {transpose.output[0], softmax.output[0], conv.output[0]}  # shapes now (1, 4, A, 16), (1, 4, A, 1)
        for vi in [v for v in graph.value_info if v.name in changed]:
            graph.value_info.remove(vi)
        _replace_node(graph, conv, [matmul], inits)
        done += 1
    return done


def upsample_as_conv(model) -> int:
    """Rewrite every ``ConvTranspose`` with a 2 × 2 kernel, stride 2 and no padding (the mask prototypes'
    upsampling) as a 1 × 1 ``Conv`` to 4·C channels followed by ``DepthToSpace(2, CRD)``; returns how many.

    The same sums (each output pixel is one input pixel times one kernel tap, summed over input
    channels), so outputs agree to float rounding, not bit for bit. onnxruntime has no int8 kernel for
    ConvTranspose, so in int8 graphs this layer ran in float (17 ms of a 115 ms FastSAM-s run at 1024 ×
    768); as a 1 × 1 conv it is quantized like every other conv.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    done = 0
    for node in [n for n in graph.node if n.op_type == "ConvTranspose"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.input[1] not in inits or (len(node.input) > 2 and node.input[2] not in inits):
            continue
        w = numpy_helper.to_array(inits[node.input[1]])  # (Cin, Cout, 2, 2)
        if w.ndim != 4 or w.shape[2:] != (2, 2) or list(attrs.get("strides", [1, 1])) != [2, 2]:
            continue
        if any(v != 0 for v in attrs.get("pads", [0, 0, 0, 0])) or any(v != 0 for v in attrs.get("output_padding", [0, 0])):
            continue
        if attrs.get("group", 1) != 1 or any(v != 1 for v in attrs.get("dilations", [1, 1])) or "output_shape" in attrs:
            continue
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        cin, cout = w.shape[:2]
        # out[co, 2h + a, 2w + b] = sum_ci x[ci, h, w] · W[ci, co, a, b]: channel co·4 + a·2 + b of the 1 × 1 conv
        w1 = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(cout * 4, cin, 1, 1))
        base = node.name.rsplit("/", 1)[0] if "/" in node.name else node.name
        names = [node.input[1] + "_as_conv1x1"]
        graph.initializer.append(numpy_helper.from_array(w1, names[0]))
        if len(node.input) > 2 and node.input[2]:
            names.append(node.input[2] + "_as_conv1x1")
            graph.initializer.append(numpy_helper.from_array(np.repeat(numpy_helper.to_array(inits[node.input[2]]), 4), names[1]))
        mid = node.output[0] + "_space"
        conv = helper.make_node("Conv", [node.input[0], *names], [mid], name=base + "/Conv1x1", kernel_shape=[1, 1])
        d2s = helper.make_node("DepthToSpace", [mid], list(node.output), name=base + "/DepthToSpace", blocksize=2, mode="CRD")
        _replace_node(graph, node, [conv, d2s], inits)
        done += 1
    return done
