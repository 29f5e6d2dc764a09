"""``fastsam-onnx fetch NAME``: download a zoo model's checkpoint and export it to a bundle in the cache.

The checkpoint goes to ``$FASTSAM_ONNX_CACHE/checkpoints`` (default ``~/.cache/fastsam-onnx``), the bundle to
``$FASTSAM_ONNX_CACHE/NAME``, where ``FastSAM("NAME")`` finds it. Exporting needs the [export] extra.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("fetch", help="download a model of the zoo and export it", description=__doc__)
    p.add_argument("name", nargs="?", help="registry name, e.g. fastsam-s, fastsam-x, clip-vit-b-32 (omit with --list)")
    p.add_argument("--list", action="store_true", help="list the models of the zoo")
    p.add_argument("--no-verify", action="store_true", help="keep a download that cannot be checked against a SHA-256")
    p.add_argument("--no-export", action="store_true", help="only download the checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..download import cache_dir, fetch_checkpoint
    from ..models.registry import MODELS, find_model
    from . import UsageError

    if args.list or not args.name:
        for m in MODELS:
            size = f"{m.source.approx_mb:g} MB" if m.source.approx_mb else "shipped"
            check = "sha256" if m.verifiable else ("local" if m.local else "no published sha256")
            print(f"{m.name:15s} {m.kind:8s} {size:>10s}  {check:20s} {m.description}")
        return 0 if args.list else 2
    desc = find_model(args.name)
    if desc is None:
        raise UsageError(f"unknown model {args.name!r}; see: fastsam-onnx fetch --list")
    if desc.local is not None:
        print(f"{desc.name} ships with the package: {desc.local}")
        return 0
    out = cache_dir() / desc.name
    if (out / "manifest.json").is_file():
        print(f"{desc.name} is already fetched: {out}")
        return 0
    checkpoint = fetch_checkpoint(desc.name, verify=not args.no_verify, progress=not args.quiet)
    print(f"checkpoint: {checkpoint}", file=sys.stderr)
    if args.no_export:
        return 0
    try:
        from ..export import ExportError
        if desc.kind == "fastsam":
            from ..export.fastsam import export_fastsam as export
        else:
            from ..export.clip import export_clip as export
    except ImportError as e:
        raise UsageError(
            f"downloaded {checkpoint}; exporting it needs the [export] extra: pip install 'fastsam-onnx[export]' "
            f"then run `fastsam-onnx fetch {desc.name}` again ({e})"
        ) from None
    try:
        export(checkpoint, out, **desc.recipe)
    except ExportError as e:
        raise UsageError(str(e)) from None
    print(f"bundle: {out}  (use it as FastSAM({desc.name!r}) or --model {desc.name})")
    return 0
