"""Store a graph's large fp32 weights as fp16 where that is exact, with a Cast back to fp32 inside the graph.

The demo CLIP's checkpoint is saved in fp16 (``tools/train_clip_demo.py``, like the released CLIP checkpoints) and
``export_clip`` exports fp32 graphs, so every fp32 weight of ``clip_text.onnx`` is an fp16 value widened: its
49408 x 64 token embedding takes 12.6 MB of the 13.1 MB file, half of which is zero bits. Stored as fp16 and cast
back by a ``Cast(to=FLOAT)`` node, the graph computes on exactly the same fp32 numbers (widening fp16 to fp32 is
exact; onnxruntime folds the Cast into an fp32 initializer when the session is made), so every output is
bit-identical; a tensor with any value that fp16 cannot hold exactly is left alone.

    python tools/fp16_storage.py models/clip-demo        # the bundle's graphs, and its manifest's sha256

A repository tool (``tools/`` is not installed); needs ``onnx`` (the ``[export]`` extra). Running it again
changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

#: tensors smaller than this stay fp32 (a Cast node per small tensor saves nothing worth a change of the graph)
MIN_BYTES = 1 << 20
#: manifest field → sha256 key of the CLIP bundle's graphs
GRAPHS = {"text_model_file": "text_onnx", "image_model_file": "image_onnx"}


def store_fp16(path: Path, min_bytes: int = MIN_BYTES) -> list[str]:
    """Rewrite ``path`` in place: each fp32 initializer of at least ``min_bytes`` whose values are all exactly
    fp16 becomes an fp16 initializer ``NAME.fp16`` and a ``Cast(to=FLOAT)`` node that makes ``NAME`` again, first in
    the graph. Returns the names of the tensors converted (none: the file is left untouched)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inputs = {i.name for i in graph.input}
    done, casts = [], []
    for i, init in enumerate(graph.initializer):
        if init.data_type != TensorProto.FLOAT or init.name in inputs:
            continue
        values = numpy_helper.to_array(init)
        if values.nbytes < min_bytes:
            continue
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):  # NaNs too: a graph's weights have none
            continue
        name = init.name
        graph.initializer[i].CopyFrom(numpy_helper.from_array(half, name + ".fp16"))
        casts.append(helper.make_node("Cast", [name + ".fp16"], [name], to=TensorProto.FLOAT, name=name + ".cast"))
        done.append(name)
    if not done:
        return []
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    part = path.with_name(path.name + ".part")
    onnx.save(model, str(part))
    part.replace(path)
    return done


def store_bundle(bundle: Path, min_bytes: int = MIN_BYTES) -> dict[str, list[str]]:
    """:func:`store_fp16` on each graph of a CLIP bundle, then the manifest's ``sha256`` of the graphs that changed."""
    from fastsam_onnx.manifest import sha256_file

    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    changed = {}
    for field, key in GRAPHS.items():
        if field in manifest:
            graph = bundle / manifest[field]
            names = store_fp16(graph, min_bytes)
            if names:
                changed[graph.name] = names
                manifest.setdefault("sha256", {})[key] = sha256_file(graph)
    if changed:
        manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/fp16_storage.py", description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path, help="a CLIP bundle folder (manifest.json, clip_text.onnx, clip_image.onnx)")
    ap.add_argument("--min-mb", type=float, default=MIN_BYTES / 2**20, help="smallest tensor converted, MiB (default 1)")
    a = ap.parse_args(argv)
    sizes = {p.name: p.stat().st_size for p in a.bundle.glob("*.onnx")}
    changed = store_bundle(a.bundle, int(a.min_mb * 2**20))
    for name, tensors in changed.items():
        after = (a.bundle / name).stat().st_size
        print(f"{name}: {', '.join(tensors)} stored as fp16: {sizes[name] / 1e6:.2f} MB -> {after / 1e6:.2f} MB")
    if not changed:
        print("nothing to store as fp16 (already done, or no large fp32 tensor holds fp16 values exactly)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
