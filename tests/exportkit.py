"""What the export tests share (the torch exporter's: test_export.py; the native converter's: test_native_bundle.py,
test_native_cli.py): checkpoints that no converter can read, and the temporary directories a failed or finished
export must not leave behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the kinds :func:`bad_checkpoint` makes
BAD_KINDS = ("missing", "empty", "random")


def bad_checkpoint(path: Path, kind: str) -> Path:
    """``path`` made a checkpoint no converter can read: ``missing`` (nothing there), ``empty`` (no bytes) or
    ``random`` (4 KiB of seeded random bytes); returns ``path``."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind != "missing":
        raise ValueError(f"not a kind of bad checkpoint: {kind!r} (one of {', '.join(BAD_KINDS)})")
    return path


def leftovers(parent: Path, name: str) -> list[str]:
    """The temporary directories (``.NAME.tmp-*``) that an export to ``parent/NAME`` left in ``parent``."""
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}")]
