"""Which models a command runs, said out loud: zoo models fetched before the run (with progress unless
``--quiet``), and one line on stderr when an image is segmented with the demo model, a toy that knows only the
synthetic shapes of its demo world (issue 24: no silent toy)."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

#: the one line said (once per run, on stderr, not with --quiet) when the demo model segments an image
DEMO_NOTICE = (
    "note: this is the demo model, which knows only the synthetic shapes of its demo world (a photo gives meaningless "
    "blobs); for real photos: `fastsam-onnx fetch fastsam-s`, then `--model fastsam-s` (or set FASTSAM_ONNX_MODEL=fastsam-s)"
)
MODEL_HELP = (
    "bundle directory, .onnx file or zoo name (fastsam-s, fastsam-x: fetched and converted on first use); default "
    "$FASTSAM_ONNX_MODEL, else the shipped demo model (synthetic shapes only)"
)
CLIP_HELP = (
    "CLIP bundle directory or zoo name (clip-vit-b-32, clip-vit-b-32-int8: fetched on first use) for text prompts; "
    "default $FASTSAM_ONNX_CLIP, else the shipped demo CLIP"
)


def fetch_models(model: Any, clip: Any = None, *, quiet: bool = False, need_clip: bool = False) -> None:
    """Fetch and convert, now and with progress unless ``quiet``, the zoo models the run will load: ``model``
    (None: ``$FASTSAM_ONNX_MODEL``) and, when ``need_clip`` (text prompts, embeddings), ``clip`` (None:
    ``$FASTSAM_ONNX_CLIP``). Paths and cached models are left to the model's own loading."""
    from ..zoo import default_clip, default_fastsam, resolve_name

    specs = [default_fastsam() if model is None else model]
    if need_clip and not hasattr(clip, "similarity"):
        specs.append(default_clip() if clip is None else clip)
    for spec in specs:
        if isinstance(spec, (str, os.PathLike)):
            resolve_name(spec, progress=not quiet)


def say_if_demo(model: Any, quiet: bool, stream: Optional[Any] = None) -> bool:
    """Print :data:`DEMO_NOTICE` (one line, ``stream``: stderr) when ``model`` (a FastSAM) is the demo model and not
    ``quiet``; True when it was said."""
    from ..zoo import is_demo

    if quiet or not is_demo(model.onnx_path):
        return False
    print(DEMO_NOTICE, file=stream or sys.stderr, flush=True)
    return True
