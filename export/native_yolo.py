"""The YOLOv8 building blocks of the native FastSAM converter (:mod:`.native_fastsam`): Conv (+ BatchNorm folded
as ``torch.nn.utils.fusion.fuse_conv_bn_weights`` folds it, with the same fp32 operations, so the same weights bit
for bit; or already fused), SiLU as ``Mul(x, Sigmoid(x))`` as the torch exporter writes it, C2f, SPPF, nearest
Upsample and Concat, each read from its module record (class names, attributes and weight shapes) and emitted
into a :class:`~.onnx_graph.Graph` with the node and initializer names the torch exporter gives them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from fastsam_onnx.errors import BadModelError

from .checkpoint import Record
from .onnx_graph import Graph

__all__ = ["Builder", "Scope", "attr", "array", "integer", "kind"]

_MISSING = object()


def attr(rec: Any, key: str, where: str, default: Any = _MISSING) -> Any:
    """``rec.key`` of a module record, ``default`` when absent (BadModelError when there is no default)."""
    value = None
    if isinstance(rec, Record):
        try:
            value = getattr(rec, key)
        except AttributeError:
            value = _MISSING
    else:
        value = _MISSING
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise BadModelError(f"{where}: {getattr(rec, 'name', type(rec).__name__)} has no {key!r}")
        return default
    return value


def kind(rec: Any) -> str:
    return rec.name if isinstance(rec, Record) else type(rec).__name__


def array(rec: Record, key: str, where: str, optional: bool = False) -> np.ndarray | None:
    """A parameter or buffer of ``rec`` as fp32 (checkpoints store fp16 mostly)."""
    value = attr(rec, key, where, None if optional else _MISSING)
    if value is None:
        return None
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise BadModelError(f"{where}.{key}: expected a float tensor, found {type(value).__name__}")
    return value.astype(np.float32)


def _pair(rec: Record, key: str, where: str, default: Any = _MISSING) -> list[int]:
    v = attr(rec, key, where, default)
    v = [v, v] if isinstance(v, (int, np.integer)) else list(v) if isinstance(v, (tuple, list)) else None
    if v is None or len(v) != 2 or not all(isinstance(i, (int, np.integer)) for i in v):
        raise BadModelError(f"{where}: {key} is {attr(rec, key, where, None)!r}, expected an int or a pair of ints")
    return [int(i) for i in v]


def integer(rec: Record, key: str, where: str, default: Any = _MISSING) -> int:
    v = attr(rec, key, where, default)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or int(v) != v:
        raise BadModelError(f"{where}: {key} is {v!r}, expected an integer")
    return int(v)


class Scope:
    """Where a module sits: its node-name prefix (``/model.22/cv2.0/cv2.0.2``), its state-dict prefix
    (``model.22.cv2.0.2``) and, inside an ``nn.Sequential``, the prefix its children's scope names start with
    (the torch exporter names a module relative to its nearest ancestor that is not a container)."""

    def __init__(self, node: str, state: str, rel: str = ""):
        self.node, self.state, self.rel = node, state, rel

    def sub(self, *keys: str, sequential: bool = False) -> "Scope":
        dotted = ".".join(keys)
        rel = f"{self.rel}{dotted}." if sequential else ""
        return Scope(f"{self.node}/{self.rel}{dotted}", f"{self.state}.{dotted}", rel)


class Builder:
    """Emits the nodes of one FastSAM graph into ``g`` and its weights straight into ``model`` (an
    ``onnx.ModelProto``: each weight is copied once, fp32, where it will stay); ``ch`` maps each value to its
    channel count."""

    def __init__(self, g: Graph):
        from onnx import ModelProto

        self.g = g
        self.model = ModelProto()
        self.ch: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}
        self.proto_scale = 1  # how much the prototypes' upsampling enlarges (set by the head)

    def op(self, op_type: str, scope: Scope, *inputs: str, **attrs: Any) -> str:
        return self.g.op(op_type, *inputs, name=f"{scope.node}/{op_type}", **attrs)

    def const(self, array: np.ndarray, name: str) -> str:
        """An initializer; an array equal to one added before (dtype, shape, bytes) reuses it, as onnxsim would."""
        from onnx import helper

        array = np.ascontiguousarray(array, dtype=np.asarray(array).dtype.newbyteorder("<"))
        key = (array.dtype.str, array.shape, hashlib.blake2b(array.data, digest_size=16).digest())
        if key not in self._consts:
            t = self.model.graph.initializer.add()
            t.name = self._consts[key] = self.g.fresh(name)
            t.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            t.dims.extend(array.shape)
            t.raw_data = array.tobytes()
        return self._consts[key]

    # ---- convolutions -------------------------------------------------------------------------------------
    def conv2d(self, rec: Record, x: str, s: Scope, bn: Record | None = None) -> str:
        """An ``nn.Conv2d`` record (``bn``: a BatchNorm2d record folded into it) applied to ``x``."""
        w = array(rec, "weight", s.state)
        b = array(rec, "bias", s.state, optional=True)
        if w.ndim != 4:
            raise BadModelError(f"{s.state}.weight has shape {w.shape}, expected 4 dimensions")
        groups = integer(rec, "groups", s.state, 1)
        cout, cin_g, kh, kw = w.shape
        if cin_g * groups != self.ch[x] or cout % groups:
            raise BadModelError(f"{s.state}.weight {w.shape} (groups {groups}) cannot take {self.ch[x]} channels")
        if attr(rec, "padding_mode", s.state, "zeros") != "zeros":
            raise BadModelError(f"{s.state}: padding_mode {rec.padding_mode!r} is not supported")
        if b is not None and b.shape != (cout,):
            raise BadModelError(f"{s.state}.bias has shape {b.shape}, expected ({cout},)")
        kernel = _pair(rec, "kernel_size", s.state, (kh, kw))
        if kernel != [kh, kw]:
            raise BadModelError(f"{s.state}: kernel_size {kernel} does not match its weight {w.shape}")
        pad = _pair(rec, "padding", s.state, 0)
        if bn is not None:
            w, b = _fold_bn(w, b, bn, f"{s.state[:-5]}.bn" if s.state.endswith(".conv") else s.state)
        inputs = [x, self.const(w, f"{s.state}.weight")] + ([self.const(b, f"{s.state}.bias")] if b is not None else [])
        y = self.op("Conv", s, *inputs, dilations=_pair(rec, "dilation", s.state, 1), group=groups,
                    kernel_shape=kernel, pads=pad + pad, strides=_pair(rec, "stride", s.state, 1))
        self.ch[y] = cout
        return y

    def act(self, rec: Any, x: str, s: Scope) -> str:
        name = kind(rec)
        if name == "Identity":
            return x
        if name == "SiLU":
            y = self.g.op("Mul", x, self.g.op("Sigmoid", x, name=f"{s.node}/Sigmoid"), name=f"{s.node}/Mul")
        elif name == "ReLU":
            y = self.op("Relu", s, x)
        else:
            raise BadModelError(f"{s.state}: activation {name} is not supported (SiLU, ReLU, Identity)")
        self.ch[y] = self.ch[x]
        return y

    def conv(self, rec: Record, x: str, s: Scope) -> str:
        """An ultralytics ``Conv`` / ``DWConv`` record: conv + BatchNorm (or already fused) + activation."""
        children = rec.children()
        if "conv" not in children or "act" not in children:
            raise BadModelError(f"{s.state}: {rec.name} record without conv/act modules")
        bn = children.get("bn")
        if bn is not None and kind(bn) != "BatchNorm2d":
            raise BadModelError(f"{s.state}.bn is a {kind(bn)}, expected BatchNorm2d")
        y = self.conv2d(children["conv"], x, s.sub("conv"), bn)
        return self.act(children["act"], y, s.sub("act"))

    def module(self, rec: Any, x: str, s: Scope) -> str:
        """A module of the head's branches: Conv/DWConv, nn.Conv2d, or an nn.Sequential of them."""
        name = kind(rec)
        if name in ("Conv", "DWConv"):
            return self.conv(rec, x, s)
        if name == "Conv2d":
            return self.conv2d(rec, x, s)
        if name == "Sequential":
            for key, child in rec.children().items():
                x = self.module(child, x, s.sub(key, sequential=kind(child) == "Sequential"))
            return x
        raise BadModelError(f"{s.state}: {name} is not a module the FastSAM converter knows")

    # ---- backbone and neck blocks ---------------------------------------------------------------------------
    def c2f(self, rec: Record, x: str, s: Scope) -> str:
        y = self.conv(attr(rec, "cv1", s.state), x, s.sub("cv1"))
        c = integer(rec, "c", s.state, self.ch[y] // 2)
        if self.ch[y] != 2 * c:
            raise BadModelError(f"{s.state}: cv1 gives {self.ch[y]} channels, expected 2 x {c}")
        ys = self.g.op("Split", y, self.const(np.array([c, c], np.int64), f"{s.state}.split"), outputs=2,
                       name=f"{s.node}/Split", axis=1)
        for v in ys:
            self.ch[v] = c
        for key, m in attr(rec, "m", s.state).children().items():
            if kind(m) != "Bottleneck":
                raise BadModelError(f"{s.state}.m.{key}: {kind(m)} is not a Bottleneck")
            ys.append(self.bottleneck(m, ys[-1], s.sub("m", key)))
        return self.conv(attr(rec, "cv2", s.state), self.concat(ys, 1, s), s.sub("cv2"))

    def bottleneck(self, rec: Record, x: str, s: Scope) -> str:
        y = self.conv(attr(rec, "cv1", s.state), x, s.sub("cv1"))
        y = self.conv(attr(rec, "cv2", s.state), y, s.sub("cv2"))
        if attr(rec, "add", s.state, False):
            if self.ch[y] != self.ch[x]:
                raise BadModelError(f"{s.state}: shortcut of {self.ch[x]} onto {self.ch[y]} channels")
            y = self.op("Add", s, x, y)
            self.ch[y] = self.ch[x]
        return y

    def sppf(self, rec: Record, x: str, s: Scope) -> str:
        ys = [self.conv(attr(rec, "cv1", s.state), x, s.sub("cv1"))]
        pool, ps = attr(rec, "m", s.state), s.sub("m")
        if kind(pool) != "MaxPool2d" or attr(pool, "ceil_mode", ps.state, False):
            raise BadModelError(f"{ps.state}: {kind(pool)} is not a MaxPool2d the converter knows")
        attrs = dict(kernel_shape=_pair(pool, "kernel_size", ps.state), strides=_pair(pool, "stride", ps.state),
                     pads=_pair(pool, "padding", ps.state, 0) * 2, dilations=_pair(pool, "dilation", ps.state, 1))
        for _ in range(integer(rec, "n", s.state, 3)):
            ys.append(self.op("MaxPool", ps, ys[-1], **attrs))
            self.ch[ys[-1]] = self.ch[ys[0]]
        y = self.conv(attr(rec, "cv2", s.state), self.concat(ys, 1, s), s.sub("cv2"))
        if attr(rec, "add", s.state, False):
            y = self.op("Add", s, y, x)
            self.ch[y] = self.ch[x]
        return y

    def upsample(self, rec: Record, x: str, s: Scope) -> str:
        scale = attr(rec, "scale_factor", s.state)
        scale = list(scale) if isinstance(scale, (tuple, list)) else [scale, scale]
        if attr(rec, "mode", s.state, "nearest") != "nearest" or attr(rec, "size", s.state, None) is not None:
            raise BadModelError(f"{s.state}: only nearest Upsample by a scale factor is supported")
        if len(scale) != 2 or any(float(f) != int(f) or f < 1 for f in scale):
            raise BadModelError(f"{s.state}: scale_factor {scale} is not a whole number")
        scales = self.const(np.array([1, 1, *scale], np.float32), f"{s.state}.scales")
        y = self.op("Resize", s, x, "", scales, coordinate_transformation_mode="asymmetric", mode="nearest",
                    nearest_mode="floor")
        self.ch[y] = self.ch[x]
        return y

    def concat(self, xs: list[str], axis: int, s: Scope) -> str:
        if axis not in (1, -3):
            raise BadModelError(f"{s.state}: Concat along dimension {axis} is not supported (channels only)")
        y = self.op("Concat", s, *xs, axis=1)
        self.ch[y] = sum(self.ch[v] for v in xs)
        return y


def _fold_bn(w: np.ndarray, b: np.ndarray | None, bn: Record, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Fold a BatchNorm2d record into conv weights, the fp32 operations of torch's fuse_conv_bn_weights."""
    mean, var = array(bn, "running_mean", where), array(bn, "running_var", where)
    gamma = array(bn, "weight", where, optional=True)
    beta = array(bn, "bias", where, optional=True)
    n = w.shape[0]
    gamma = np.ones(n, np.float32) if gamma is None else gamma
    beta = np.zeros(n, np.float32) if beta is None else beta
    if any(a.shape != (n,) for a in (mean, var, gamma, beta)):
        raise BadModelError(f"{where}: BatchNorm of {mean.shape[0]} channels after a conv of {n}")
    eps = np.float32(attr(bn, "eps", where, 1e-5))
    rsqrt = np.float32(1) / np.sqrt(var + eps)
    b = np.zeros(n, np.float32) if b is None else b
    return w * (gamma * rsqrt).reshape(-1, 1, 1, 1), (b - mean) * rsqrt * gamma + beta

