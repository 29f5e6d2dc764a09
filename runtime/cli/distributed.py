"""``fastsam-onnx segment SOURCE --engine ray --out RESULTS.parquet|.jsonl``: the same segmentation on Ray Data.

SOURCE: a folder (recursively, as the folder mode lists it), an image file, a URI a pyarrow file system reads
(``s3://bucket/photos/``), or a ``.txt`` file of paths / URIs, one per line. Without ``--address`` a local Ray
instance sized to this machine is started, and stopped at the end with every process it started, after Ctrl-C
too (:func:`fastsam_onnx.distributed.cluster.local_instance`); ``--address auto|HOST:PORT`` joins a running
cluster, or gives up after ``--connect-timeout`` seconds (default 30) with exit status 2. ``--workers`` actors each hold one model and use ``--threads-per-worker`` CPUs; rows stream back to this
process and are written as parts (:mod:`fastsam_onnx.distributed.parts`). Per-image failures are rows with an
``error`` (reported on one line, counted; exit status 1, as the folder mode); errors that would fail every image
stop the run with exit status 2; Ctrl-C keeps the parts written so far (130). ``--skip-existing`` reads the paths
already in RESULTS and segments only the others; a part it cannot read, or a row without a ``path`` string, stops
the run before any work (exit status 2). A ``.txt`` list naming one image twice segments it once (the summary
counts the repeats).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import time
from pathlib import Path
from typing import Iterator

from ..progress import Progress, clean

__all__ = ["add_ray_arguments", "check_engine", "run_ray"]

_RAY_ONLY = ("address", "connect_timeout", "workers", "threads_per_worker", "batch_size")
_NOT_WITH_RAY = ("json", "out_dir", "overlays", "edges_dir", "coco", "max_frames", "embeddings", "epsilon", "label")


def add_ray_arguments(group) -> None:
    """Register ``--engine``, ``--address``, ``--workers``, ``--threads-per-worker`` and ``--batch-size``."""
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="ray: run on Ray Data (the [ray] extra); rows go to --out RESULTS.parquet or .jsonl")
    group.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                       help="ray: join this running cluster (default: start a local Ray instance sized to this machine)")
    group.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                       help="ray --address: give up (exit status 2) when no cluster answers within S seconds (default 30)")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="ray: actors, one model each (default: the cluster's CPUs // --threads-per-worker)")
    group.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                       help="ray: CPUs and onnxruntime threads per actor (default 1)")
    group.add_argument("--batch-size", type=int, default=None, metavar="B",
                       help="ray: images per actor call; a batch lost with its worker is redone whole (default 4)")


def check_engine(args: argparse.Namespace) -> str:
    """"local" or "ray"; refuse (UsageError) Ray options without ``--engine ray``."""
    from .usage import UsageError

    engine = getattr(args, "engine", "local") or "local"
    if engine != "ray":
        for dest in _RAY_ONLY:
            if getattr(args, dest, None) is not None:
                raise UsageError(f"--{dest.replace('_', '-')} needs --engine ray")
    return engine


def _check_args(args: argparse.Namespace) -> str:
    """Refuse options that do not apply; return the output format."""
    from ..distributed.parts import output_format, part_files
    from .options import check_options
    from .usage import UsageError

    for dest in _NOT_WITH_RAY:
        if getattr(args, dest, None) not in (None, False):
            raise UsageError(f"--{dest.replace('_', '-')} does not apply to --engine ray (rows go to --out RESULTS.parquet or .jsonl)")
    if getattr(args, "format", "coco") != "coco":
        raise UsageError("--format does not apply to --engine ray: rows hold the COCO instance JSON (convert them afterwards)")
    if args.out is None:
        raise UsageError("--engine ray needs --out RESULTS.parquet or RESULTS.jsonl (a folder of parts)")
    plain = argparse.Namespace(**vars(args))
    plain.out = None
    check_options(plain, "folder")  # conf, iou, imgsz, max_det ranges
    if args.connect_timeout is not None:
        if args.address is None:
            raise UsageError("--connect-timeout needs --address (a local instance is started, not joined)")
        if not (math.isfinite(args.connect_timeout) and args.connect_timeout > 0):
            raise UsageError(f"--connect-timeout must be a number of seconds > 0, got {args.connect_timeout:g}")
    if args.address == "local":
        raise UsageError("--address local: leave --address out to start a local Ray instance")
    if args.address is not None:
        from ..distributed.cluster import parse_address

        parse_address(args.address)  # auto, HOST:PORT or ray://HOST:PORT (BadArgumentError: exit status 2)
    for dest, lo in (("workers", 1), ("threads_per_worker", 1), ("batch_size", 1)):
        v = getattr(args, dest)
        if v is not None and v < lo:
            raise UsageError(f"--{dest.replace('_', '-')} must be >= {lo}, got {v}")
    fmt = output_format(args.out)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {clean(args.out)} exists and is not a folder of results parts")
    if part_files(args.out, fmt) and not args.skip_existing:
        raise UsageError(f"--out {clean(args.out)} already holds results: pass --skip-existing to resume, or remove it")
    return fmt


def _items(source: str, out: Path) -> tuple[list[tuple[str, str]], int]:
    """The ``(path, source)`` pairs of SOURCE and how many repeated lines of a ``.txt`` list were left out (a
    path given twice, also as ``./a.jpg`` and ``a.jpg``, is one image: the first spelling names it)."""
    from ..distributed.source import list_source
    from .usage import UsageError

    p = Path(source)
    if p.suffix.lower() == ".txt" and p.is_file():
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the list of images {clean(p)}: {e}") from None
        items = list_source([line.strip() for line in lines if line.strip() and not line.strip().startswith("#")])
        seen: set[str] = set()
        unique = []
        for path, src in items:
            key = src if "://" in src else os.path.normpath(src)
            if key not in seen:
                seen.add(key)
                unique.append((path, src))
        return unique, len(items) - len(unique)
    return list_source(source, exclude=(out,)), 0


def _cause(e: BaseException) -> BaseException | None:
    """The FastSAMError behind a Ray exception, or None. Ray Data re-raises a worker's exception as
    ``RayTaskError(UserCodeException)`` without the original object, but with its traceback text, whose
    ``fastsam_onnx.errors.NAME: message`` line names the typed error: rebuilt from that line."""
    from .. import errors

    x: BaseException | None = e
    for _ in range(8):
        if x is None:
            break
        if isinstance(x, errors.FastSAMError):
            return x
        x = getattr(x, "cause", None) or x.__cause__
    found = re.findall(r"fastsam_onnx\.errors\.(\w+): ([^\n]*)", str(e))
    if found:
        cls = getattr(errors, found[-1][0], None)
        if isinstance(cls, type) and issubclass(cls, errors.FastSAMError):
            return cls(found[-1][1])
    return None


@contextlib.contextmanager
def _ray_session(args: argparse.Namespace) -> Iterator[None]:
    """Ray for the block: joined at ``--address`` (given up after ``--connect-timeout`` s), or a local instance
    ended with all its processes however the block ends; this process's Ray as it is when already running."""
    import logging

    import ray

    import ray.data

    from ..distributed.cluster import CONNECT_TIMEOUT, check_reachable, local_instance

    debug = os.environ.get("FASTSAM_ONNX_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours (one line per bad image) instead
    logging.getLogger("ray.data").setLevel(logging.INFO if debug else logging.ERROR)
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init = dict(include_dashboard=False, log_to_driver=debug, logging_level=logging.INFO if debug else logging.ERROR)
    if args.address is None:  # "local": a new instance, even where `ray start` left one running on this machine
        with local_instance(address="local", **init):
            yield
        return
    check_reachable(args.address, args.connect_timeout or CONNECT_TIMEOUT)
    ray.init(address=args.address, **init)
    try:
        yield
    finally:
        ray.shutdown()


def _repeats(n: int) -> str:
    return f" ({n} repeated {'line' if n == 1 else 'lines'} of the list left out)" if n else ""


def run_ray(args: argparse.Namespace, prompts: dict) -> int:
    """Segment SOURCE on Ray and write the rows to ``--out``; 0 all done, 1 some bad images, 130 Ctrl-C."""
    from .extras import require

    require("ray", "ray", "pyarrow", what="segment --engine ray")
    fmt = _check_args(args)
    from .. import FastSAM
    from ..distributed.parts import existing_paths
    from ..zoo import MODEL_ENV, env_setting, is_demo
    from .models import fetch_models
    from .segment_many import check_output_dir
    from .usage import UsageError

    items, repeats = _items(args.image, args.out)
    if not items:
        raise UsageError(f"no images in {clean(args.image)} (extensions: .jpg .png .bmp .tif .webp ...)")
    done = existing_paths(args.out) if args.skip_existing else set()
    todo = [(p, s) for p, s in items if p not in done]
    demo = args.model is None and env_setting(MODEL_ENV) is None  # the workers' default: the demo model
    if args.address is None:  # local: the model must load here too, so a bad one fails before Ray starts
        fetch_models(args.model, args.clip, quiet=args.quiet, need_clip=bool(prompts.get("texts")))  # once, not per actor
        demo = is_demo(FastSAM(args.model, clip=args.clip, providers=args.providers, strict=args.strict).onnx_path)
    check_output_dir(args.out, "--out")
    threads = args.threads_per_worker or 1
    with _ray_session(args) if todo else contextlib.nullcontext():
        return _run(args, prompts, fmt, items, repeats, todo, done, demo, threads)


def _run(args: argparse.Namespace, prompts: dict, fmt: str, items: list, repeats: int, todo: list, done: set,
         demo: bool, threads: int) -> int:
    """The job itself, inside the Ray session; writes the parts and the summary line."""
    import ray

    from ..distributed import segment_dataset
    from ..distributed.parts import PartWriter
    from .models import DEMO_NOTICE
    from .segment_many import plural, segment_kwargs
    from .usage import UsageError

    t0 = time.perf_counter()
    bad = instances = 0
    interrupted = False
    progress = Progress(len(todo), str(args.image), enabled=not args.quiet, unit="image")
    writer = PartWriter(args.out, fmt, seen=done)

    def on_rows(rows: list[dict]) -> None:
        nonlocal bad, instances
        for r in rows:
            instances += r["instances"]
            if r["error"] is not None:
                bad += 1
                progress.write(f"{clean(r['path'])}: skipped: {clean(r['error'])}")
            progress.update(status=f"{r['path']}: {'failed' if r['error'] else 'done'}")

    try:
        if todo:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            if args.workers is not None and args.address is None and args.workers * threads > cpus:
                raise UsageError(f"--workers {args.workers} x --threads-per-worker {threads} is more than the {cpus} CPUs of this machine")
            ds = segment_dataset(
                todo, model=args.model, clip=args.clip, providers=args.providers, strict=args.strict,
                workers=args.workers, threads_per_worker=threads, batch_size=args.batch_size or 4,
                **segment_kwargs(args, prompts),
            )
            writer.write_all(ds.iter_batches(batch_size=None, batch_format="pyarrow"), on_rows)
    except KeyboardInterrupt:  # the parts so far are written (PartWriter's exit)
        interrupted = True
    except Exception as e:
        cause = _cause(e)
        if cause is None:
            raise
        raise cause from None
    finally:
        progress.close()
    stopped = f", stopped by Ctrl-C after {writer.rows}" if interrupted else ""
    if demo and not args.quiet and writer.rows > bad:  # images were segmented with the demo model
        progress.write(DEMO_NOTICE)
    progress.write(
        f"{args.image}: {writer.rows - bad} segmented, {len(items) - len(todo)} skipped (existing), {bad} bad, "
        f"{plural(len(items), 'image')}{_repeats(repeats)}{stopped} in {time.perf_counter() - t0:.1f} s; {plural(instances, 'instance')} found; "
        f"results {args.out} ({plural(len(writer.parts), 'part')} written)"
    )
    return 130 if interrupted else (1 if bad else 0)

