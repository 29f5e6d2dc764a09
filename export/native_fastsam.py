"""The FastSAM (YOLOv8-seg) ONNX graph built from a checkpoint's own weights, with numpy and ``onnx`` alone.

:func:`build_fastsam` walks the checkpoint's layer list (``model.model``: Conv, C2f, SPPF, Upsample, Concat and
the Segment head, matched by class *name*, so 8.0-series checkpoints with other module paths work too), reading
every channel count, kernel, stride, padding, group, dilation, eps and activation from the records and the
weights' shapes (:mod:`.native_yolo`): FastSAM-s (yolov8s-seg) and FastSAM-x (yolov8x-seg) go through the same
code. The graph computes what ``fastsam_onnx.export.fastsam.export_fastsam`` ships, with the same operations
where they decide the numbers:

- Conv + BatchNorm folded with the fp32 operations of ``fuse_conv_bn_weights`` (the same weights bit for bit);
- SiLU as ``Mul(x, Sigmoid(x))``, as the torch exporter writes it (onnxruntime fuses the pair);
- the DFL in the form :func:`.rewrite.dfl_last_axis` gives it (softmax over the last axis, MatMul with 0..15);
- the prototypes' k x k stride-k ConvTranspose as :func:`.rewrite.upsample_as_conv` writes it (1 x 1 Conv +
  DepthToSpace);
- anchors and strides: constants in a static graph; in a dynamic one computed from each level's feature-map
  shape (integer CumSum grids cast to float: exact, like the exporter's Range + Cast), so any H, W works.

Nodes and initializers are named as the torch exporter names them (``/model.22/cv2.0/cv2.0.2/Conv``,
``model.0.conv.weight``), so :mod:`.precision` finds the head's decoding tail in the same way. Weights become
fp32; nothing is left that onnxsim would fold or remove (no Identity, Constant or Shape arithmetic on constants).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastsam_onnx.errors import BadArgumentError, BadModelError

from .checkpoint import Record
from .native_yolo import Builder, Scope, array, attr, integer, kind
from .onnx_graph import OPSET, Graph, check

__all__ = ["build_fastsam", "LAYERS"]

#: the classes of ``model.model`` layers the converter knows (by class name, whatever their module path)
LAYERS = ("Conv", "DWConv", "C2f", "SPPF", "Upsample", "Concat", "Segment")
_NOT_SEGMENT = {"Detect": "a detection model (Detect head, no Segment)", "Classify": "a classifier (Classify head)",
                "Pose": "a pose model (Pose head)", "OBB": "an oriented-box model (OBB head)"}


def build_fastsam(model: Record, *, imgsz: int = 1024, dynamic: bool = True, batch: int = 1, opset: int | None = None):
    """The ONNX graph (``onnx.ModelProto``, checked) of a FastSAM / one-class YOLOv8-seg checkpoint.

    model: the module record of an ultralytics ``SegmentationModel`` (``ckpt["ema"] or ckpt["model"]`` from
    :func:`.checkpoint.read_checkpoint`). dynamic: batch, height and width axes free (any H, W that are multiples
    of the largest stride); else a fixed ``batch`` x 3 x imgsz x imgsz input. opset: :data:`.onnx_graph.OPSET`
    when None. Input ``images`` (batch, 3, height, width) float32 RGB in [0, 1]; outputs ``output0`` (batch,
    4 + nc + nm, anchors): xywh boxes in input pixels, class scores, mask coefficients, and ``output1`` (batch,
    nm, height / 4, width / 4): the mask prototypes, as the torch-exported bundles have them.
    Raises :class:`~fastsam_onnx.errors.BadModelError` (one line) for what it does not know: no Segment head (a
    detector, a classifier), nc != 1, an unknown layer class, inconsistent shapes.
    """
    opset = OPSET if opset is None else int(opset)
    if opset < 15:
        raise BadArgumentError(f"the native FastSAM graph needs opset 15 or later, got {opset}")
    try:
        return _build(model, int(imgsz), bool(dynamic), int(batch), opset)
    except (BadModelError, BadArgumentError):
        raise
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:  # a record of an unexpected type
        detail = " ".join(str(e).split())[:200]
        raise BadModelError(f"unexpected checkpoint structure ({type(e).__name__}: {detail})") from None


def _build(model: Record, imgsz: int, dynamic: bool, batch: int, opset: int):
    layers = attr(model, "model", "model", None) if isinstance(model, Record) else None
    if not isinstance(layers, Record) or not layers.children():
        raise BadModelError(f"not an ultralytics model: {kind(model)} record without a layer list (model.model)")
    items = list(layers.children().values())
    head = items[-1]
    if kind(head) != "Segment":
        what = _NOT_SEGMENT.get(kind(head), f"a model whose last layer is {kind(head)}")
        raise BadModelError(f"{kind(model)} is {what}; FastSAM needs a YOLOv8 segmentation model (Segment head)")
    nc = integer(head, "nc", "Segment")
    if nc != 1:
        raise BadModelError(f"the segmentation model has {nc} classes; FastSAM models have exactly one")
    strides = _strides(head)
    if not dynamic:
        if int(batch) != batch or batch < 1:
            raise BadArgumentError(f"batch must be a positive integer, got {batch}")
        if int(imgsz) != imgsz or imgsz <= 0 or imgsz % max(strides):
            raise BadArgumentError(f"imgsz must be a positive multiple of {max(strides)}, got {imgsz}")
    yaml = attr(model, "yaml", "model", {})
    channels = yaml.get("channels", yaml.get("ch", 3)) if isinstance(yaml, dict) else 3
    if channels != 3:
        raise BadModelError(f"the model takes {channels} input channels; FastSAM graphs take RGB (3)")

    g = Graph("fastsam")
    b = Builder(g)
    shape = ["batch", 3, "height", "width"] if dynamic else [int(batch), 3, int(imgsz), int(imgsz)]
    x = g.input("images", np.float32, shape)
    b.ch[x] = 3
    ys: list[str] = []
    for i, layer in enumerate(items):
        s = Scope(f"/model.{i}", f"model.{i}")
        name = kind(layer)
        f = attr(layer, "f", s.state, -1)
        src = [_take(ys, x, j, i, s) for j in f] if isinstance(f, (list, tuple)) else _take(ys, x, f, i, s)
        if name in ("Conv", "DWConv"):
            y = b.conv(layer, src, s)
        elif name == "C2f":
            y = b.c2f(layer, src, s)
        elif name == "SPPF":
            y = b.sppf(layer, src, s)
        elif name == "Upsample":
            y = b.upsample(layer, src, s)
        elif name == "Concat":
            y = b.concat(list(src), integer(layer, "d", s.state, 1), s)
        elif name == "Segment" and i == len(items) - 1:
            out0, out1 = _segment(b, layer, list(src) if isinstance(src, list) else [src], s, strides, dynamic,
                                  imgsz)
            break
        else:
            raise BadModelError(f"layer {i} is a {name}; the FastSAM converter knows {', '.join(LAYERS)}")
        ys.append(y)

    nm, n_out = b.ch[out1], b.ch[out0]
    if dynamic:
        s0 = ["batch", n_out, "anchors"]
        s1 = ["batch", nm, "mask_height", "mask_width"]
    else:
        sizes = [imgsz // s for s in strides]
        s0 = [int(batch), n_out, sum(k * k for k in sizes)]
        s1 = [int(batch), nm, b.proto_scale * sizes[0], b.proto_scale * sizes[0]]
    for value, name, dims in ((out0, "output0", s0), (out1, "output1", s1)):
        _rename(g, value, name)
        g.output(name, name, np.float32, dims)
    proto = _assemble(b, opset)
    _metadata(proto, model, head, strides, imgsz, batch, dynamic)
    return proto


def _take(ys: list[str], x: str, j: Any, i: int, s: Scope) -> str:
    """The output of layer ``j`` (-1: the previous one; the input for layer 0) as layer ``i``'s input."""
    if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not -i - 1 <= j < i or (j < -1 and i + j < 0):
        raise BadModelError(f"{s.state}: input {j!r} (its 'f') is not an earlier layer")
    if j == -1:
        return ys[-1] if ys else x
    return ys[j] if j >= 0 else ys[i + j]


def _strides(head: Record) -> list[int]:
    stride = attr(head, "stride", "Segment")
    values = np.asarray(stride, dtype=np.float64).ravel() if isinstance(stride, (np.ndarray, list, tuple)) else None
    if values is None or not len(values) or not all(v > 0 and v == int(v) for v in values):
        raise BadModelError(f"Segment.stride is {stride!r}: expected positive whole strides per level")
    return [int(v) for v in values]


def _segment(b: Builder, head: Record, xs: list[str], s: Scope, strides: list[int], dynamic: bool, imgsz: int):
    """The Segment head: box (cv2), class (cv3) and mask-coefficient (cv4) branches per level, DFL, anchors, and
    the prototypes; returns (output0, output1) values."""
    g = b.g
    nl = len(xs)
    nc, nm, reg_max = (integer(head, k, s.state) for k in ("nc", "nm", "reg_max"))
    if len(strides) != nl or integer(head, "nl", s.state, nl) != nl:
        raise BadModelError(f"{s.state}: {nl} input levels but strides {strides}")
    if attr(head, "one2one_cv2", s.state, None) is not None:
        raise BadModelError(f"{s.state}: an end-to-end (one-to-one) head is not supported")
    parts = []
    for key, want in (("cv2", 4 * reg_max), ("cv3", nc), ("cv4", nm)):
        branch = attr(head, key, s.state)
        if len(branch) != nl:
            raise BadModelError(f"{s.state}.{key} has {len(branch)} levels, expected {nl}")
        level = []
        for i, x in enumerate(xs):
            y = b.module(branch[i], x, s.sub(key, str(i), sequential=kind(branch[i]) == "Sequential"))
            if b.ch[y] != want:
                raise BadModelError(f"{s.state}.{key}.{i} gives {b.ch[y]} channels, expected {want}")
            level.append(b.op("Reshape", s, y, b.const(np.array([0, want, -1], np.int64), f"{s.state}.{key}_shape")))
        parts.append(b.op("Concat", s, *level, axis=2))
    box, cls, coef = parts

    dfl = attr(head, "dfl", s.state)
    if reg_max > 1:
        ds = s.sub("dfl")
        w = array(attr(dfl, "conv", ds.state), "weight", f"{ds.state}.conv")
        if w.shape != (1, reg_max, 1, 1):
            raise BadModelError(f"{ds.state}.conv.weight has shape {w.shape}, expected (1, {reg_max}, 1, 1)")
        d = b.op("Reshape", ds, box, b.const(np.array([0, 4, reg_max, -1], np.int64), f"{ds.state}.shape"))
        d = b.op("Softmax", ds, b.op("Transpose", ds, d, perm=[0, 1, 3, 2]), axis=3)
        d = g.op("MatMul", d, b.const(w.reshape(reg_max, 1), f"{ds.state}.conv.weight_column"),
                 name=f"{ds.node}/conv/MatMul")
        box = b.op("Reshape", ds, d, b.const(np.array([0, 4, -1], np.int64), f"{ds.state}.shape"))
    elif kind(dfl) != "Identity":
        raise BadModelError(f"{s.state}.dfl: {kind(dfl)} with reg_max {reg_max}")

    anchors, stride = _anchors(b, xs, strides, s, dynamic, imgsz)
    lt, rb = g.op("Split", box, b.const(np.array([2, 2], np.int64), f"{s.state}.split"), outputs=2,
                  name=f"{s.node}/Split", axis=1)
    x1y1 = b.op("Sub", s, anchors, lt)
    x2y2 = b.op("Add", s, anchors, rb)
    cxy = b.op("Div", s, b.op("Add", s, x1y1, x2y2), b.const(np.array(2, np.float32), f"{s.state}.two"))
    wh = b.op("Sub", s, x2y2, x1y1)
    xywh = b.op("Mul", s, b.op("Concat", s, cxy, wh, axis=1), stride)
    out0 = b.op("Concat", s, xywh, b.op("Sigmoid", s, cls), coef, axis=1)
    b.ch[out0] = 4 + nc + nm
    return out0, _proto(b, attr(head, "proto", s.state), xs[0], s.sub("proto"), nm)


def _anchors(b: Builder, xs: list[str], strides: list[int], s: Scope, dynamic: bool, imgsz: int):
    """Anchor points (2, A) at cell centres in grid units and the stride of each anchor (1, A), float32."""
    if not dynamic:
        points, steps = [], []
        for st in strides:
            n = imgsz // st
            sy, sx = np.meshgrid(np.arange(n, dtype=np.float32) + 0.5, np.arange(n, dtype=np.float32) + 0.5,
                                 indexing="ij")
            points.append(np.stack([sx.ravel(), sy.ravel()]))
            steps.append(np.full((1, n * n), st, np.float32))
        return (b.const(np.concatenate(points, 1), f"{s.state}.anchors"),
                b.const(np.concatenate(steps, 1), f"{s.state}.strides"))
    from onnx import numpy_helper

    row = b.const(np.array([1, -1], np.int64), f"{s.state}.row")
    points, steps = [], []
    for x, st in zip(xs, strides):
        hw = b.op("Shape", s, x, start=2, end=4)
        ones = b.op("ConstantOfShape", s, hw, value=numpy_helper.from_array(np.ones(1, np.int64)))
        grid = [b.op("Reshape", s, b.op("CumSum", s, ones, b.const(np.array(axis, np.int64), f"{s.state}.axis")), row)
                for axis in (1, 0)]  # x = 1..w along rows, y = 1..h down columns
        points.append(b.op("Concat", s, *grid, axis=0))
        full = b.op("ConstantOfShape", s, hw, value=numpy_helper.from_array(np.array([st], np.int64)))
        steps.append(b.op("Reshape", s, full, row))
    half = b.const(np.array(0.5, np.float32), f"{s.state}.half")
    anchors = b.op("Sub", s, b.op("Cast", s, b.op("Concat", s, *points, axis=1), to=1), half)
    return anchors, b.op("Cast", s, b.op("Concat", s, *steps, axis=1), to=1)


def _proto(b: Builder, rec: Record, x: str, s: Scope, nm: int) -> str:
    """Proto: cv1 -> k x k stride-k ConvTranspose (as 1 x 1 Conv + DepthToSpace) -> cv2 -> cv3."""
    if kind(rec) != "Proto":
        raise BadModelError(f"{s.state} is a {kind(rec)}, expected Proto")
    y = b.conv(attr(rec, "cv1", s.state), x, s.sub("cv1"))
    up, us = attr(rec, "upsample", s.state), s.sub("upsample")
    w = array(up, "weight", us.state)
    bias = array(up, "bias", us.state, optional=True)
    if kind(up) != "ConvTranspose2d" or w.ndim != 4 or w.shape[0] != b.ch[y]:
        raise BadModelError(f"{us.state}: {kind(up)} {w.shape} is not a ConvTranspose2d of {b.ch[y]} channels")
    k = w.shape[2]
    if (w.shape[3] != k or [int(v) for v in attr(up, "stride", us.state)] != [k, k]
            or any(int(v) for v in attr(up, "padding", us.state, (0, 0)))
            or any(int(v) for v in attr(up, "output_padding", us.state, (0, 0)))
            or integer(up, "groups", us.state, 1) != 1
            or any(int(v) != 1 for v in attr(up, "dilation", us.state, (1, 1)))):
        raise BadModelError(f"{us.state}: only a k x k ConvTranspose2d of stride k, no padding, is supported")
    cin, cout = w.shape[:2]
    # out[co, k*h + a, k*w + c] = sum_ci x[ci, h, w] W[ci, co, a, c]: channel (co * k + a) * k + c of a 1 x 1 conv
    w1 = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(cout * k * k, cin, 1, 1))
    inputs = [y, b.const(w1, f"{us.state}.weight_as_conv1x1")]
    if bias is not None:
        inputs.append(b.const(np.repeat(bias, k * k), f"{us.state}.bias_as_conv1x1"))
    y = b.g.op("Conv", *inputs, name=f"{us.node}/Conv1x1", kernel_shape=[1, 1])
    y = b.g.op("DepthToSpace", y, name=f"{us.node}/DepthToSpace", blocksize=k, mode="CRD")
    b.ch[y], b.proto_scale = cout, k
    y = b.conv(attr(rec, "cv2", s.state), y, s.sub("cv2"))
    y = b.conv(attr(rec, "cv3", s.state), y, s.sub("cv3"))
    if b.ch[y] != nm:
        raise BadModelError(f"{s.state} gives {b.ch[y]} prototypes, expected nm = {nm}")
    return y


def _assemble(b: Builder, opset: int):
    """The ModelProto: the builder's weights (already in ``b.model``) with the graph's nodes, inputs and outputs,
    checked by :func:`onnx_graph.check` (on a skeleton: the weights are valid by construction)."""
    import onnx
    from onnx import helper

    model, g = b.model, b.g
    model.ir_version = min(onnx.IR_VERSION, 9)  # what onnxruntime 1.17 reads, as Graph.model() sets it
    model.producer_name = "fastsam-onnx native converter"
    model.opset_import.append(helper.make_opsetid("", opset))
    model.graph.name = g.name
    model.graph.node.extend(g.nodes)
    model.graph.input.extend(g.inputs)
    model.graph.output.extend(g.outputs)
    check(model)
    return model


def _rename(g: Graph, old: str, new: str) -> None:
    """Give the value ``old`` the name ``new`` (a graph output is named by its producing node's output)."""
    for node in g.nodes:
        for seq in (node.input, node.output):
            for j, v in enumerate(seq):
                if v == old:
                    seq[j] = new


def _metadata(proto, model: Record, head: Record, strides: list[int], imgsz: int, batch: int, dynamic: bool) -> None:
    """The metadata ultralytics writes into its ONNX exports (its AutoBackend reads stride, task, names, imgsz)."""
    from onnx import helper

    names = attr(model, "names", "model", None)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    names = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {0: "object"}
    yaml = attr(model, "yaml", "model", {})
    cfg = str(yaml.get("yaml_file", "yolov8-seg")) if isinstance(yaml, dict) else "yolov8-seg"
    helper.set_model_props(proto, {
        "description": f"Ultralytics {cfg.rsplit('/', 1)[-1].removesuffix('.yaml').replace('yolo', 'YOLO')} model "
                       "(built from the checkpoint by fastsam-onnx's native converter)",
        "author": "Ultralytics", "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com", "stride": str(max(strides)), "task": "segment", "head": kind(head),
        "batch": str(1 if dynamic else batch), "imgsz": str([imgsz, imgsz]), "names": str(names), "channels": "3",
        "end2end": "False",
    })
