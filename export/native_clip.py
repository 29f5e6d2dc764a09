"""CLIP ViT towers built from the weights of an OpenAI CLIP state dict, with numpy and the ``onnx`` package only.

:func:`build_clip` turns a state dict as ``clip.model.CLIP.state_dict()`` names it (for instance the one of OpenAI's
TorchScript archive ``ViT-B-32.pt``, read by :func:`fastsam_onnx.export.checkpoint.read_checkpoint` and flattened by
``state_dict``) into the two graphs of a CLIP bundle, with the inputs and outputs of the torch exporter's
(:func:`fastsam_onnx.export.clip.export_clip`):

- image tower: ``images`` (batch, 3, R, R) float32 → ``image_embeds`` (batch, D) float32;
- text tower: ``tokens`` (batch, C) int64 → ``text_embeds`` (batch, D) float32, pooled at argmax(tokens) (the
  end-of-text token, the largest id).

Every size is read from the shapes as ``clip.model.build_model`` reads them (heads = width // 64). The graphs are
simplified as built: the activations stay (batch·tokens, width) matrices so that every linear layer is one Gemm
with its bias, the attention scaling is folded into the query weights, the class and position embeddings into one
constant added after a Pad, the causal mask is a constant, ln_final runs on the pooled token only; nothing is left
for constant folding or onnxsim to remove. Weights are fp32 whatever the checkpoint's precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from fastsam_onnx.errors import BadModelError

from .onnx_graph import Graph

__all__ = ["ClipConfig", "build_clip", "clip_config", "IMAGE_INPUT", "IMAGE_OUTPUT", "TEXT_INPUT", "TEXT_OUTPUT"]

IMAGE_INPUT, IMAGE_OUTPUT = "images", "image_embeds"
TEXT_INPUT, TEXT_OUTPUT = "tokens", "text_embeds"
#: LayerNorm epsilon of CLIP (torch's default)
EPS = 1e-5
#: the QuickGELU constant: x * sigmoid(1.702 x)
QUICK_GELU = 1.702
#: entries of OpenAI's archives that are not weights (``build_model`` drops them), and the unused temperature
NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "logit_scale")
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.")
_BLOCK_TENSORS = (
    "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
    "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
    "ln_2.weight", "ln_2.bias",
)


@dataclass(frozen=True)
class ClipConfig:
    """The architecture of a ViT CLIP, as ``clip.model.build_model`` infers it from the state dict's shapes."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    #: weights of the model (``sum(p.numel() for p in model.parameters())`` of the clip module's model)
    parameters: int

    @property
    def vision_heads(self) -> int:
        return self.vision_width // 64

    @property
    def grid(self) -> int:
        return self.image_resolution // self.vision_patch_size


def _block_count(state: Mapping[str, np.ndarray], visual: bool) -> int:
    """The number of residual blocks of one tower; BadModelError when their indices are not 0..n-1."""
    found = {int(m.group(2)) for k in state if (m := _BLOCK.match(k)) and bool(m.group(1)) == visual}
    tower = "visual.transformer" if visual else "transformer"
    if not found:
        raise BadModelError(f"not a ViT CLIP state dict: no {tower}.resblocks.* tensors")
    if found != set(range(len(found))):
        missing = min(set(range(max(found) + 1)) - found)
        raise BadModelError(f"CLIP state dict lacks {tower}.resblocks.{missing} (found blocks {sorted(found)})")
    return len(found)


def _shape(state: Mapping[str, np.ndarray], name: str) -> tuple[int, ...]:
    if name not in state:
        raise BadModelError(f"CLIP state dict lacks the tensor {name}")
    return tuple(int(d) for d in np.shape(state[name]))


def clip_config(state: Mapping[str, np.ndarray]) -> ClipConfig:
    """The architecture of the ViT CLIP whose state dict is ``state``, checked: BadModelError (one line) for a
    ResNet visual tower, a missing tensor, a tensor of the wrong shape or a weight the converter does not know."""
    if not isinstance(state, Mapping):
        raise BadModelError(f"a CLIP state dict is a mapping of names to arrays, got {type(state).__name__}")
    if any(k.startswith(("visual.layer1.", "visual.attnpool.")) for k in state):
        raise BadModelError(
            "CLIP checkpoint has a ResNet visual tower (RN50 family): the native converter builds ViT CLIP only; "
            "export it with the torch exporter (pip install 'fastsam-onnx[export]')"
        )
    if "visual.proj" not in state or "visual.conv1.weight" not in state:
        raise BadModelError("not a ViT CLIP state dict: it lacks visual.proj / visual.conv1.weight")
    conv = _shape(state, "visual.conv1.weight")
    if len(conv) != 4 or conv[1] != 3 or conv[2] != conv[3]:
        raise BadModelError(f"visual.conv1.weight has shape {conv}, expected (width, 3, patch, patch)")
    vision_width, patch = conv[0], conv[3]
    grid = round((_shape(state, "visual.positional_embedding")[0] - 1) ** 0.5)
    embed = _shape(state, "text_projection")
    width = _shape(state, "ln_final.weight")[0] if "ln_final.weight" in state else -1
    cfg = dict(
        embed_dim=embed[-1], image_resolution=patch * grid, vision_layers=_block_count(state, True),
        vision_width=vision_width, vision_patch_size=patch, context_length=_shape(state, "positional_embedding")[0],
        vocab_size=_shape(state, "token_embedding.weight")[0], transformer_width=width,
        transformer_heads=width // 64, transformer_layers=_block_count(state, False),
    )
    for w, what in ((vision_width, "vision width"), (width, "text width")):
        if w <= 0 or w % 64:
            raise BadModelError(f"CLIP {what} {w} is not a positive multiple of 64 (heads = width // 64)")
    expected = _expected_shapes(ClipConfig(**cfg, parameters=0))
    for name, shape in expected.items():
        if _shape(state, name) != shape:
            raise BadModelError(f"CLIP tensor {name} has shape {_shape(state, name)}, expected {shape}")
    for name, value in state.items():
        if name not in expected and name not in NOT_WEIGHTS and name.endswith((".weight", ".bias", "_weight", "_bias")):
            raise BadModelError(f"CLIP state dict has a weight the native converter does not know: {name}")
        if name in expected and not np.issubdtype(np.asarray(value).dtype, np.floating) and np.asarray(value).dtype.name != "bfloat16":
            raise BadModelError(f"CLIP tensor {name} is {np.asarray(value).dtype}, expected floating point")
    params = sum(int(np.prod(s)) for s in expected.values()) + ("logit_scale" in state)
    return ClipConfig(**cfg, parameters=params)


def _expected_shapes(c: ClipConfig) -> dict[str, tuple[int, ...]]:
    """name → shape of every tensor the two towers read."""
    vw, tw, g = c.vision_width, c.transformer_width, c.grid
    out: dict[str, tuple[int, ...]] = {
        "visual.conv1.weight": (vw, 3, c.vision_patch_size, c.vision_patch_size),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (g * g + 1, vw),
        "visual.ln_pre.weight": (vw,), "visual.ln_pre.bias": (vw,),
        "visual.ln_post.weight": (vw,), "visual.ln_post.bias": (vw,),
        "visual.proj": (vw, c.embed_dim),
        "token_embedding.weight": (c.vocab_size, tw),
        "positional_embedding": (c.context_length, tw),
        "ln_final.weight": (tw,), "ln_final.bias": (tw,),
        "text_projection": (tw, c.embed_dim),
    }
    for prefix, width, layers in (("visual.transformer", vw, c.vision_layers), ("transformer", tw, c.transformer_layers)):
        shapes = {
            "attn.in_proj_weight": (3 * width, width), "attn.in_proj_bias": (3 * width,),
            "attn.out_proj.weight": (width, width), "attn.out_proj.bias": (width,),
            "mlp.c_fc.weight": (4 * width, width), "mlp.c_fc.bias": (4 * width,),
            "mlp.c_proj.weight": (width, 4 * width), "mlp.c_proj.bias": (width,),
        }
        for i in range(layers):
            for t in _BLOCK_TENSORS:
                out[f"{prefix}.resblocks.{i}.{t}"] = shapes.get(t, (width,))
    return out


class _Tower:
    """One tower's graph and its weights (fp32): builds the layers of ``clip.model`` in ONNX nodes."""

    def __init__(self, graph: Graph, state: Mapping[str, np.ndarray]):
        self.g, self.state = graph, state
        self._consts: dict[tuple, list[tuple[Any, str]]] = {}

    def w(self, name: str) -> np.ndarray:
        return np.asarray(self.state[name]).astype(np.float32)

    def const(self, array: np.ndarray, name: str, dtype: type = np.float32) -> str:
        """An initializer holding ``array`` as ``dtype``, shared with an equal one added before (as onnxsim would
        merge them: shape constants, and weights such as layer norms left at their initial values)."""
        from onnx import numpy_helper

        a = np.ascontiguousarray(array, dtype=dtype)
        flat = a.reshape(-1)
        key = (a.dtype.str, a.shape, flat[:16].tobytes(), flat[-16:].tobytes())  # a cheap key, compared in full below
        for tensor, value in self._consts.setdefault(key, []):
            if np.array_equal(numpy_helper.to_array(tensor), a):
                return value
        value = self.g.const(a, name)
        self._consts[key].append((self.g.initializers[-1], value))  # the stored tensor: no second copy kept
        return value

    def ints(self, values: list[int], name: str) -> str:
        return self.const(np.array(values), name, np.int64)

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.g.op(
            "LayerNormalization", x, self.const(self.w(prefix + ".weight"), prefix + ".weight"),
            self.const(self.w(prefix + ".bias"), prefix + ".bias"), axis=-1, epsilon=EPS, name=prefix,
        )

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        """x (N, in) @ weight.T + bias, one Gemm (weight stored (in, out) as the torch exporter stores it)."""
        return self.g.op("Gemm", x, self.const(weight.T, name + ".weight"), self.const(bias, name + ".bias"), name=name)

    def block(self, x: str, prefix: str, width: int, tokens: int, mask: str | None) -> str:
        """One ResidualAttentionBlock on x (batch·tokens, width): x + attn(ln_1(x)), then x + mlp(ln_2(x))."""
        g, heads = self.g, width // 64
        head_dim = width // heads
        w_in, b_in = self.w(prefix + ".attn.in_proj_weight"), self.w(prefix + ".attn.in_proj_bias")
        scale = np.float32(1 / np.sqrt(head_dim))
        w_in[:width] *= scale  # the query scaling folded into the query projection
        b_in[:width] *= scale
        qkv = self.linear(self.layer_norm(x, prefix + ".ln_1"), w_in, b_in, prefix + ".attn.in_proj")
        qkv = g.op("Reshape", qkv, self.ints([-1, tokens, 3 * heads, head_dim], "shape"))
        qkv = g.op("Transpose", qkv, perm=[0, 2, 1, 3])  # (batch, 3·heads, tokens, head_dim)
        q, k, v = g.op("Split", qkv, self.ints([heads] * 3, "split"), axis=1, outputs=3)
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        if mask is not None:
            scores = g.op("Add", scores, mask)
        attn = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)  # (batch, heads, tokens, head_dim)
        attn = g.op("Reshape", g.op("Transpose", attn, perm=[0, 2, 1, 3]), self.ints([-1, width], "shape"))
        out = self.linear(attn, self.w(prefix + ".attn.out_proj.weight"), self.w(prefix + ".attn.out_proj.bias"), prefix + ".attn.out_proj")
        x = g.op("Add", x, out)
        h = self.linear(self.layer_norm(x, prefix + ".ln_2"), self.w(prefix + ".mlp.c_fc.weight"), self.w(prefix + ".mlp.c_fc.bias"), prefix + ".mlp.c_fc")
        h = g.op("Mul", h, g.op("Sigmoid", g.op("Mul", h, self.const(np.array(QUICK_GELU), "quick_gelu"))))
        h = self.linear(h, self.w(prefix + ".mlp.c_proj.weight"), self.w(prefix + ".mlp.c_proj.bias"), prefix + ".mlp.c_proj")
        return g.op("Add", x, h)


def _output(g: Graph, value: str, name: str, dim: int) -> None:
    """Make the last node's output ``value`` the graph output ``name`` (batch, dim) float32 by renaming it (no
    Identity node)."""
    node = g.nodes[-1]
    assert list(node.output) == [value]
    node.output[0] = name
    g.output(name, name, np.float32, ["batch", dim])


def _image_tower(state: Mapping[str, np.ndarray], c: ClipConfig) -> Graph:
    """``CLIP.encode_image`` of a VisionTransformer: patches → +class/position → ln_pre → blocks → ln_post(class) @ proj."""
    g = Graph("clip_image")
    t = _Tower(g, state)
    r, p, width, tokens = c.image_resolution, c.vision_patch_size, c.vision_width, c.grid**2 + 1
    x = g.input(IMAGE_INPUT, np.float32, ["batch", 3, r, r])
    x = g.op("Conv", x, t.const(t.w("visual.conv1.weight"), "visual.conv1.weight"), kernel_shape=[p, p], strides=[p, p])
    x = g.op("Reshape", x, t.ints([0, width, tokens - 1], "shape"))
    x = g.op("Transpose", x, perm=[0, 2, 1])  # (batch, grid², width)
    x = g.op("Pad", x, t.ints([0, 1, 0, 0, 0, 0], "pads"))  # a zero row where the class token goes
    embed = t.w("visual.positional_embedding")
    embed[0] += t.w("visual.class_embedding")
    x = g.op("Add", x, t.const(embed, "visual.class_positional_embedding"))
    x = g.op("Reshape", x, t.ints([-1, width], "shape"))  # (batch·tokens, width)
    x = t.layer_norm(x, "visual.ln_pre")
    for i in range(c.vision_layers):
        x = t.block(x, f"visual.transformer.resblocks.{i}", width, tokens, None)
    x = g.op("Slice", x, *(t.ints([v], n) for v, n in ((0, "starts"), (2**62, "ends"), (0, "axes"), (tokens, "steps"))))
    x = t.layer_norm(x, "visual.ln_post")  # the class token of each image: (batch, width)
    x = g.op("MatMul", x, t.const(t.w("visual.proj"), "visual.proj"))
    _output(g, x, IMAGE_OUTPUT, c.embed_dim)
    return g


def _text_tower(state: Mapping[str, np.ndarray], c: ClipConfig) -> Graph:
    """``CLIP.encode_text``: token + position embeddings → causal blocks → ln_final at the end token → @ projection."""
    g = Graph("clip_text")
    t = _Tower(g, state)
    n, width = c.context_length, c.transformer_width
    tokens = g.input(TEXT_INPUT, np.int64, ["batch", n])
    x = g.op("Gather", t.const(t.w("token_embedding.weight"), "token_embedding.weight"), tokens, axis=0)
    x = g.op("Add", x, t.const(t.w("positional_embedding"), "positional_embedding"))
    x = g.op("Reshape", x, t.ints([-1, width], "shape"))  # (batch·tokens, width)
    mask = t.const(np.triu(np.full((n, n), -np.inf, np.float32), 1), "causal_mask")
    for i in range(c.transformer_layers):
        x = t.block(x, f"transformer.resblocks.{i}", width, n, mask)
    x = g.op("Reshape", x, t.ints([-1, n, width], "shape"))
    eot = g.op("ArgMax", tokens, axis=-1, keepdims=1)  # (batch, 1): the end-of-text token has the largest id
    x = g.op("GatherND", x, eot, batch_dims=1)  # (batch, width)
    x = t.layer_norm(x, "ln_final")  # per token, so after the gather: the same numbers for one token instead of n
    x = g.op("MatMul", x, t.const(t.w("text_projection"), "text_projection"))
    _output(g, x, TEXT_OUTPUT, c.embed_dim)
    return g


def build_clip(state: Mapping[str, np.ndarray]):
    """(image tower, text tower) as ``onnx.ModelProto``s (opset 17, checked by onnx.checker) from the state dict of
    an OpenAI ViT CLIP (numpy arrays, any float precision); BadModelError (one line) for what it cannot convert."""
    c = clip_config(state)
    return _image_tower(state, c).model(), _text_tower(state, c).model()
