"""Scale-out on Ray Data: segment a folder, a list of paths or a bucket on a Ray cluster (the ``[ray]`` extra).

>>> from fastsam_onnx.distributed import segment_dataset          # doctest: +SKIP
>>> ds = segment_dataset("photos/", workers=4, threads_per_worker=2)
>>> ds.write_parquet("results/")                                 # or chain: ds.filter(...), ds.iter_rows() ...

:func:`segment_dataset` returns a lazy ``ray.data.Dataset`` of one row per image (:mod:`.rows`: the CLI's per-image
JSON plus ``error``, ``source``, ``node_id``, ``worker_pid``). Images are listed in the driver (:mod:`.source`),
then read, decoded and segmented by ``workers`` actors of :class:`.worker.Segmenter` (one model each, created once,
``threads_per_worker`` CPUs and onnxruntime threads each), ``batch_size`` images per call.

Faults: the actor pool runs with ``max_restarts=-1`` (an actor whose process or node dies is restarted, without
limit) and ``max_task_retries`` (default 5; a batch lost with its actor is re-run on a live one, so no image is
lost, and Ray Data keeps only the output of the attempt that finished, so none is duplicated). A batch that kills
its worker more than ``max_task_retries`` times fails the job rather than looping forever.

Nothing here imports Ray until :func:`segment_dataset` runs (``import fastsam_onnx`` never does).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Iterable, Mapping, Sequence

from ..image import MAX_PIXELS
from .rows import COLUMNS, schema, to_result_json
from .source import Source, decode_bytes, list_source

__all__ = ["segment_dataset", "list_source", "decode_bytes", "to_result_json", "schema", "COLUMNS", "remote_args"]

DEFAULT_BATCH_SIZE = 4
DEFAULT_TASK_RETRIES = 5


def remote_args(
    max_restarts: int = -1, max_task_retries: int = DEFAULT_TASK_RETRIES, spread: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ray_remote_args`` of the actor pool: restarts and retries (see the module docstring), and the
    ``SPREAD`` scheduling strategy when ``spread`` (one actor per node first, e.g. to use every node's disk)."""
    args: dict[str, Any] = {"max_restarts": int(max_restarts), "max_task_retries": int(max_task_retries)}
    if spread:
        args["scheduling_strategy"] = "SPREAD"
    args.update(extra or {})
    return args


def _count(name: str, value: int | None, lo: int) -> int | None:
    from ..errors import BadArgumentError

    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lo):
        raise BadArgumentError(f"{name} must be an int >= {lo}, got {value!r}")
    return value


def default_workers(threads_per_worker: int) -> int:
    """Workers that fill the connected Ray cluster's CPUs: ``CPU // threads_per_worker`` (at least 1)."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(1, cpus // threads_per_worker)


def segment_dataset(
    source: Source | Iterable[tuple[str, str]],
    *,
    model: str | os.PathLike[str] | None = None,
    clip: str | os.PathLike[str] | None = None,
    providers: str | Sequence | None = None,
    strict: bool = False,
    workers: int | None = None,
    threads_per_worker: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_gpus: float | None = None,
    skip: Iterable[str] = (),
    exclude: Iterable[str | os.PathLike[str] | None] = (),
    max_pixels: int | None = MAX_PIXELS,
    max_restarts: int = -1,
    max_task_retries: int = DEFAULT_TASK_RETRIES,
    spread: bool = False,
    ray_remote_args: Mapping[str, Any] | None = None,
    wait_for_workers: float | None = None,
    **options: Any,
):
    """A lazy ``ray.data.Dataset`` of one result row per image of ``source`` (:mod:`fastsam_onnx.distributed`).

    Args:
        source: a folder, an image file, a URI (pyarrow file systems), a list of paths/URIs (see
            :func:`list_source`), or ``(path, source)`` pairs already listed.
        model, clip, providers, strict: as :class:`~fastsam_onnx.FastSAM` (paths must exist on every node; zoo
            names are fetched on first use by each node). None: ``$FASTSAM_ONNX_MODEL`` / ``$FASTSAM_ONNX_CLIP`` as
            set here (the driver), passed on to the workers; the demo models when unset.
        workers: actors (one model each); default: the cluster's CPUs // ``threads_per_worker``; never more than
            there are batches.
        threads_per_worker: CPUs reserved per actor and its onnxruntime / OpenCV threads.
        batch_size: images per actor call (a lost batch is redone whole).
        num_gpus: GPUs per actor (with ``providers="cuda"``), default none.
        skip: paths (as in the ``path`` column) to leave out, e.g. those an earlier run wrote.
        exclude: folders whose files are not listed (the output folder inside the source folder).
        max_restarts, max_task_retries, spread, ray_remote_args: the actor pool's Ray options (:func:`remote_args`);
            e.g. ``ray_remote_args={"resources": {"slot": 1}}`` with one ``slot`` per node: one actor per node.
        wait_for_workers: seconds to wait, when the dataset runs, for all ``workers`` actors to be up before the
            first batch is handed out (so every actor gets work, however slowly some start; Ray Data's
            ``wait_for_min_actors_s``); the job fails if they are not up by then. None (default): start with the
            first actor that is up, the others join as they come.
        options: ``FastSAM.segment`` keyword arguments: conf, iou, imgsz, max_det, retina_masks, bboxes, points,
            labels, texts, point_mode, text_mode.

    Raises :class:`~fastsam_onnx.errors.BadArgumentError` for a bad count or a missing source; when the dataset
    runs, errors that would fail every image (bad model, provider, prompt or setting) stop it;
    :class:`~fastsam_onnx.errors.MissingExtraError` without the ``[ray]`` extra.
    """
    from ..extras import require_extra

    require_extra("ray", "ray", "pyarrow", what="fastsam_onnx.distributed.segment_dataset")
    import ray
    import ray.data

    _count("workers", workers, 1)
    _count("threads_per_worker", threads_per_worker, 1)
    _count("batch_size", batch_size, 1)
    if wait_for_workers is not None and (isinstance(wait_for_workers, bool) or not isinstance(wait_for_workers, (int, float))
                                         or not 0 < wait_for_workers < float("inf")):
        from ..errors import BadArgumentError

        raise BadArgumentError(f"wait_for_workers must be a number of seconds > 0, got {wait_for_workers!r}")
    if isinstance(source, (str, os.PathLike)) or (isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source)):
        items = list_source(source, exclude=exclude)
    else:
        items = [(str(p), str(s)) for p, s in source]
    skipped = set(skip)
    items = [(p, s) for p, s in items if p not in skipped]
    if workers is None:
        workers = default_workers(threads_per_worker)
    workers = max(1, min(workers, -(-len(items) // batch_size)))  # no actor without a batch to do
    from ..zoo import CLIP_ENV, MODEL_ENV, env_setting
    from .worker import Segmenter

    model = env_setting(MODEL_ENV) if model is None else model  # the driver's setting, wherever the actors run
    clip = env_setting(CLIP_ENV) if clip is None else clip

    ds = ray.data.from_items([{"path": p, "source": s} for p, s in items])
    with warnings.catch_warnings():  # Ray >= 2.5x deprecates **ray_remote_args, with no named max_restarts yet
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(
            Segmenter,
            fn_constructor_kwargs=dict(
                model=None if model is None else os.fspath(model), clip=None if clip is None else os.fspath(clip),
                providers=providers, strict=strict, options=options, threads=threads_per_worker, max_pixels=max_pixels,
            ),
            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads_per_worker, num_gpus=num_gpus,
            **remote_args(max_restarts, max_task_retries, spread, ray_remote_args),
        )
    if wait_for_workers is not None:  # this dataset's own DataContext (a copy), read when it starts the pool
        ds.context.wait_for_min_actors_s = max(1, math.ceil(wait_for_workers))
    return ds
