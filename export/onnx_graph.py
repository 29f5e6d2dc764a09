"""A small ONNX graph builder for the native converters (numpy weights in, an ``onnx.ModelProto`` out).

Nodes are added in order with :meth:`Graph.op`, weights with :meth:`Graph.const` (an initializer, named once
per array); every value gets a unique name from a prefix, so building code reads like the network's forward
pass::

    g = Graph("fastsam")
    x = g.input("images", np.float32, ["batch", 3, "height", "width"])
    y = g.op("Conv", x, g.const(w, "conv.w"), g.const(b, "conv.b"), pads=[1, 1, 1, 1], strides=[1, 1])
    g.output(g.op("Sigmoid", y), "output0", np.float32, ["batch", 37, "anchors"])
    model = g.model(opset=17)

Needs only numpy and the ``onnx`` package (no torch).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["Graph", "check", "save"]

#: the ONNX opset of the native graphs (onnxruntime 1.17+ runs it; the torch exporter's graphs use 17 too)
OPSET = 17


class Graph:
    """Nodes, initializers, inputs and outputs of one ONNX graph, in the order they are added."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self._names: dict[str, int] = {}

    def fresh(self, prefix: str) -> str:
        """A value name not used before: ``prefix``, else ``prefix_1``, ``prefix_2``, ..."""
        n = self._names.get(prefix, 0)
        self._names[prefix] = n + 1
        return prefix if n == 0 else f"{prefix}_{n}"

    def input(self, name: str, dtype: Any, shape: Sequence[int | str | None]) -> str:
        """A graph input of numpy ``dtype`` and ``shape`` (ints, or strings for named dynamic axes)."""
        from onnx import helper

        self.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)))
        self._names[name] = self._names.get(name, 0) + 1
        return name

    def output(self, value: str, name: str, dtype: Any, shape: Sequence[int | str | None]) -> str:
        """Make ``value`` a graph output called ``name`` (an Identity node renames it when the names differ)."""
        from onnx import helper

        if value != name:
            self.nodes.append(helper.make_node("Identity", [value], [name], name=self.fresh(f"{name}/identity")))
        self.outputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)))
        return name

    def const(self, array: Any, name: str = "const") -> str:
        """An initializer holding ``array`` (kept with its dtype); returns its value name."""
        from onnx import numpy_helper

        value = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), value))
        return value

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, **attrs: Any) -> Any:
        """Add one ``op_type`` node reading ``inputs`` ("" for an omitted optional input); returns its output
        name, or a list of ``outputs`` names when ``outputs`` > 1. ``attrs``: the node's attributes."""
        from onnx import helper

        base = self.fresh(name or op_type.lower())
        outs = [base] if outputs == 1 else [f"{base}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self, opset: int = OPSET, producer: str = "fastsam-onnx native converter") -> Any:
        """The ``onnx.ModelProto`` of the graph (IR version that onnxruntime 1.17 reads), checked by onnx.checker
        (:func:`check`). The initializers move into the model one at a time (this graph keeps none of them), so
        the weights are held once, not twice."""
        import onnx
        from onnx import helper

        model = onnx.ModelProto()
        model.ir_version = min(onnx.IR_VERSION, 9)
        model.producer_name = producer
        model.opset_import.append(helper.make_opsetid("", opset))
        g = model.graph
        g.name = self.name
        g.node.extend(self.nodes)
        g.input.extend(self.inputs)
        g.output.extend(self.outputs)
        initializers, self.initializers = self.initializers, []
        for t in initializers:
            g.initializer.append(t)
            t.Clear()  # (append copies: the copy in the graph is the one that stays)
        check(model)
        return model


def check(model: Any) -> None:
    """``onnx.checker.check_model`` on a skeleton of ``model`` whose initializers hold one element each: the same
    graph, types and names, without the checker serializing and parsing every weight twice (550 MB more for
    FastSAM-x, 2 GB for CLIP ViT-B/32); the weights themselves are valid by construction."""
    import onnx
    from onnx import helper

    skeleton = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.metadata_props.extend(model.metadata_props)
    g = skeleton.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    for t in model.graph.initializer:
        s = g.initializer.add()
        s.name, s.data_type = t.name, t.data_type
        s.dims.extend([1] * len(t.dims))
        s.raw_data = bytes(helper.tensor_dtype_to_np_dtype(t.data_type).itemsize)
    onnx.checker.check_model(skeleton)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def save(model: Any, path: Any) -> None:
    """Write ``model`` (an ``onnx.ModelProto``) to ``path`` as ``onnx.save`` does, one initializer at a time.

    ``onnx.save`` serializes the whole model into one string, and the upb protobuf backend holds it twice while
    doing so: for FastSAM-x (272 MB of fp32 weights) 550 MB on top of the model. Here the model without its
    initializers is written first and each initializer after it, as the fields of the graph they belong to (the
    protobuf wire format: field 7 of ModelProto is the graph, field 5 of GraphProto an initializer; a parser reads
    fields in any order, and repeated ones in the order written): the same model for ``onnx.load`` and
    onnxruntime, with one tensor's serialization in memory at a time."""
    from onnx import GraphProto, ModelProto

    head, graph = ModelProto(), GraphProto()
    for dst, src, skip in ((head, model, "graph"), (graph, model.graph, "initializer")):
        for field, value in src.ListFields():
            if field.name == skip:
                continue
            if getattr(field, "is_repeated", None) or getattr(field, "label", None) == 3:  # protobuf 6+ / older
                getattr(dst, field.name).extend(value)
            elif field.type == field.TYPE_MESSAGE:
                getattr(dst, field.name).CopyFrom(value)
            else:
                setattr(dst, field.name, value)
    sizes = [t.ByteSize() for t in model.graph.initializer]
    body = graph.SerializeToString()
    length = len(body) + sum(1 + len(_varint(n)) + n for n in sizes)
    with open(path, "wb") as f:
        f.write(head.SerializeToString())
        f.write(b"\x3a" + _varint(length))  # field 7 (graph), length-delimited
        f.write(body)
        for t, n in zip(model.graph.initializer, sizes):
            f.write(b"\x2a" + _varint(n))  # field 5 (initializer), length-delimited
            f.write(t.SerializeToString())
