"""``fastsam-onnx fetch NAME``: download a zoo model's checkpoint and convert it to a bundle in the cache.

The checkpoint goes to ``$FASTSAM_ONNX_CACHE/checkpoints`` (default ``~/.cache/fastsam-onnx``), the bundle to
``$FASTSAM_ONNX_CACHE/NAME``, where ``FastSAM("NAME")`` finds it. The conversion is native by default (numpy and
onnx, in the base install: no torch); ``--converter torch`` runs the PyTorch exporter instead (the [export]
extra). A cached checkpoint is checked against the zoo's SHA-256 and a cached bundle against its manifest before
either is used; a broken bundle is converted again. ``FastSAM("NAME")`` and ``--model NAME`` do the same on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from ..progress import clean

NO_NAME = "give a model name, e.g. `fastsam-onnx fetch fastsam-s`; `fastsam-onnx fetch --list` lists them"


def add_parser(sub) -> None:
    p = sub.add_parser("fetch", help="download a model of the zoo and convert it (no torch needed)", description=__doc__)
    p.add_argument("name", nargs="?", help="registry name, e.g. fastsam-s, fastsam-x, clip-vit-b-32 (omit with --list)")
    p.add_argument("--list", action="store_true", help="list the models of the zoo")
    p.add_argument(
        "--no-verify", action="store_true",
        help="keep a download that cannot be checked against a SHA-256; do not check a cached checkpoint",
    )
    p.add_argument("--no-export", action="store_true", help="only download the checkpoint")
    p.add_argument(
        "--converter", choices=("native", "torch"), default="native",
        help="native (the default): numpy and onnx, no torch; torch: the PyTorch exporter (needs the [export] extra)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--deadline", type=float, default=None, metavar="SECONDS",
        help="give up a download after this long (default $FASTSAM_ONNX_DOWNLOAD_DEADLINE or 3600; rerun to resume)",
    )
    p.set_defaults(run=run)


def zoo_table(models: Any) -> list[str]:
    """The zoo as aligned text lines: a header, then one row per model (columns sized to the data, sanitized)."""
    rows = [("NAME", "KIND", "SIZE", "CHECK", "DESCRIPTION")]
    for m in models:
        size = f"{m.source.approx_mb:g} MB" if m.source.approx_mb else "shipped"
        check = "sha256" if m.verifiable else ("local" if m.local else "no published sha256")
        rows.append(tuple(clean(v) for v in (m.name, m.kind, size, check, m.description)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].ljust(widths[3]), r[4]]
        lines.append("  ".join(cells).rstrip())
    return lines


def bundle_problem(bundle: Path, kind: str) -> Optional[str]:
    """None when ``bundle`` is a complete, intact bundle of ``kind``; else what is wrong with it (one phrase).

    Checks: the manifest reads and names ``kind``; every model file it names exists and matches its SHA-256.
    """
    from ..errors import BadModelError
    from ..manifest import FASTSAM_ONNX, read_manifest, verify_bundle_file

    if not bundle.is_dir():
        return f"{bundle} is not a directory"
    try:
        m = read_manifest(bundle)
        if m["kind"] != kind:
            return f"it holds a {m['kind']!r} model, not a {kind!r} model"
        if kind == "fastsam":
            files = {"onnx": m.get("model_file", FASTSAM_ONNX)}
        else:
            files = {"image_onnx": m.get("image_model_file", "clip_image.onnx"),
                     "text_onnx": m.get("text_model_file", "clip_text.onnx"),
                     "bpe": m.get("bpe_file", "bpe_simple_vocab_16e6.txt.gz")}
        for name in files.values():  # the cheap checks first
            if not (bundle / str(name)).is_file():
                return f"{name} is missing"
        for key, name in files.items():
            verify_bundle_file(bundle / str(name), m, key)
    except BadModelError as e:
        return str(e)
    except (OSError, TypeError, AttributeError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def run(args: argparse.Namespace) -> int:
    from ..download import cache_dir, fetch_checkpoint
    from ..models.registry import MODELS, find_model
    from ..zoo import cache_lock
    from .usage import UsageError
    from ..export import missing_message, missing_modules

    if args.list:
        print("\n".join(zoo_table(MODELS)))
        return 0
    if not args.name:
        raise UsageError(NO_NAME)
    desc = find_model(args.name)
    if desc is None:
        raise UsageError(f"unknown model {args.name!r}; see: fastsam-onnx fetch --list")
    if desc.local is not None:
        print(f"{desc.name} ships with the package: {clean(desc.local)}")
        return 0
    out = cache_dir() / desc.name
    if not args.no_export and (out.exists() or out.is_symlink()):
        if not out.is_dir():
            raise UsageError(f"{out} is in the way of the {desc.name} bundle and is not a directory: remove it")
        problem = bundle_problem(out, desc.kind)
        if problem is None:
            print(f"{desc.name} is already fetched: {clean(out)}")
            return 0
        print(clean(f"the cached bundle {out} is broken ({problem}); fetching and exporting it again"), file=sys.stderr)
    missing = [] if args.no_export or args.converter == "native" else missing_modules(desc.kind)
    if missing:  # before a download of up to 354 MB that could not be exported here
        raise UsageError(
            f"{missing_message(desc.kind, missing)}; or `fastsam-onnx fetch {desc.name}` (the native converter, no "
            f"torch), or `fastsam-onnx fetch {desc.name} --no-export` to only download the checkpoint"
        )
    with cache_lock(desc.name):  # the same lock as a first use in another process (zoo.fetch_bundle)
        checkpoint = fetch_checkpoint(desc.name, verify=not args.no_verify, progress=not args.quiet, deadline=args.deadline)
        print(f"checkpoint: {clean(checkpoint)}", file=sys.stderr)
        if args.no_export:
            return 0
        _convert(desc, checkpoint, out, args.converter, args.quiet)
    print(f"bundle: {clean(out)}  (converter: {args.converter}; use it as FastSAM({desc.name!r}) or --model {desc.name})")
    return 0


def _convert(desc: Any, checkpoint: Path, out: Path, converter: str, quiet: bool) -> Path:
    """Convert ``checkpoint`` with ``desc``'s recipe into ``out`` (steps on stderr unless ``quiet``)."""
    from ..export import ExportError
    from .export import _Steps
    from .usage import UsageError

    recipe = dict(desc.recipe)
    if converter == "native":
        from ..export import native

        total = (native.FASTSAM_STEPS if desc.kind == "fastsam" else native.CLIP_STEPS) + bool(recipe.get("int8"))
        export = native.convert_fastsam if desc.kind == "fastsam" else native.convert_clip
    elif desc.kind == "fastsam":
        from ..export.fastsam import STEPS as total, export_fastsam as export
    else:
        from ..export.clip import STEPS as total, export_clip as export

        total += bool(recipe.get("int8"))
    steps = _Steps(total, f"convert {desc.name}", quiet)
    kwargs = {"report": steps.report} if converter == "native" or desc.kind == "fastsam" else {}
    try:
        return steps.run(lambda: export(checkpoint, out, **recipe, progress=steps, **kwargs))
    except ExportError as e:
        raise UsageError(str(e)) from None
