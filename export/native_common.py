"""What the native converter's bundle writers share (:mod:`.native_bundle` for FastSAM, :mod:`.native_clip_bundle`
for CLIP) and the torch exporters do not (what those share too is in :mod:`.bundle`): progress lines, reading the
checkpoint, the tools' versions, the self-checks' onnxruntime sessions and comparisons, the simplified-graph check.
numpy, ``onnx`` and onnxruntime only; nothing of the runtime model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import ExportError
from .bundle import versions

CONVERTER = "native"
#: one image alone and in a batch: |batch - alone| <= CHECK_ATOL + CHECK_RTOL * |alone| element-wise
CHECK_ATOL = CHECK_RTOL = 1e-4
Steps = Callable[[int, str], None]


def step_lines(total: int, enabled: bool = True) -> Steps:
    """A ``progress(step, text)`` callback printing ``[k/N] text`` lines on stderr (nothing when not ``enabled``)."""

    def progress(step: int, text: str) -> None:
        if enabled:
            print(f"[{step}/{total}] {text}", file=sys.stderr, flush=True)

    return progress


def read_weights(weights: Path) -> Any:
    """The object tree of a checkpoint, read without running any of it (one-line BadModelError when it cannot be)."""
    from .checkpoint import read_checkpoint

    return read_checkpoint(weights)


def tools(*extra: str) -> dict[str, str]:
    """Versions of the packages that made the bundle (no torch: the native converter uses none)."""
    return versions("fastsam-onnx", "numpy", "onnx", "onnxruntime", *extra)


def cpu_session(path: Path):
    """An onnxruntime CPU session for a self-check, lean on memory: basic graph optimizations only (no fusion
    copies of the weights) and no memory arena (the run's buffers are freed, not pooled); FastSAM-x: 0.36 GB
    for the session instead of 0.67 GB."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def agree(what: str, ref: np.ndarray, got: np.ndarray) -> float:
    """max |got - ref|; ExportError when ``got`` is not finite or beyond CHECK_ATOL + CHECK_RTOL * |ref|."""
    if ref.shape != got.shape:
        raise ExportError(f"self-check: {what} has shape {got.shape}, expected {ref.shape}")
    if not np.isfinite(got).all():
        raise ExportError(f"self-check: {what} holds non-finite values")
    err = np.abs(got.astype(np.float64) - ref)
    if (err > CHECK_ATOL + CHECK_RTOL * np.abs(ref)).any():
        raise ExportError(f"self-check: {what} differs from the image alone by up to {float(err.max()):.3g}")
    return float(err.max())


def check_simplified(proto, what: str) -> None:
    """ExportError unless the graph is as simplified as onnxsim would leave it: every node's output used, no node
    computing from constants alone (foldable), no Identity or Constant node, no unused initializer."""
    g = proto.graph
    inits = {t.name for t in g.initializer}
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    problems = {
        "dead nodes": [n.name for n in g.node if not any(o in used for o in n.output)],
        "nodes of constants only": [n.name for n in g.node if all(i in inits or not i for i in n.input)],
        "Identity/Constant nodes": [n.name for n in g.node if n.op_type in ("Identity", "Constant")],
        "unused initializers": [t for t in inits if t not in used],
    }
    found = {k: v for k, v in problems.items() if v}
    if found:
        detail = "; ".join(f"{k}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for k, v in found.items())
        raise ExportError(f"{what} is not simplified as built ({detail}): a converter bug, please report it")
