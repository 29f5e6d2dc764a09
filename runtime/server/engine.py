"""The server's shared state: one FastSAM and one CLIP, the result cache, and the bounded inference pool.

:class:`Engine` runs every model call in a thread pool of ``concurrency`` workers (onnxruntime's ``run`` is
thread-safe, so one model object serves all requests). At most ``concurrency`` calls run and at most
``queue`` more wait; a call beyond that raises :class:`Busy` (HTTP 429 with ``Retry-After``), one that does
not finish within ``timeout`` seconds :class:`DeadlineExceeded` (504). The deadline also stops the work: each
call carries it to its worker thread (:func:`check_deadline`), which checks it before it starts, between stages
(decode, model run, prompt, rendering) and between CLIP batches of :data:`CLIP_BATCH` crops or texts, so a
request past its deadline frees its slot within one stage or batch. Identical segment requests in flight at
once share one model run.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import BadArgumentError
from ..image import MAX_PIXELS
from ..result import Result
from .cache import ResultCache
from .deadline import DeadlineExceeded, _Deadline, _local, check_deadline
from .images import decode_image_bytes

__all__ = ["ServerConfig", "Engine", "Busy", "DeadlineExceeded", "NotReady", "UnknownImage", "check_deadline"]

CLIP_BATCH = 8
"""Crops or texts per CLIP call in the server; the deadline is checked between calls."""


@dataclass
class ServerConfig:
    """Settings of one server (the ``serve`` command's options). Sizes in bytes, times in seconds."""

    model: str | None = None
    clip: str | None = None
    providers: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_upload_bytes: int = 32 << 20
    max_pixels: int | None = MAX_PIXELS
    cors_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    concurrency: int = 1
    queue: int = 8
    timeout: float = 60.0
    cache_bytes: int = 256 << 20
    retry_after: int = 1
    label_studio_url: str | None = None  # Label Studio's own URL (else the one /labelstudio/setup names)
    label_studio_api_key: str | None = None  # its token (else the one /labelstudio/setup sends)
    label_studio_image_hosts: list[str] = field(default_factory=list)  # other hosts task images may come from


class Busy(Exception):
    """All inference slots and queue places are taken (HTTP 429)."""


class DeadlineClip:
    """The server's view of a CLIP model: ``encode_images`` / ``encode_texts`` in :data:`CLIP_BATCH` pieces with
    :func:`check_deadline` between them; everything else is the wrapped model's. One per CLIP object, so the
    crop embeddings a result caches per CLIP object are reused by later requests."""

    def __init__(self, clip: Any):
        self._clip = clip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clip, name)

    def _pieces(self, fn: Callable[..., Any], items: Any, batch_size: int) -> Any:
        import numpy as np

        items = list(items)
        out = []
        for start in range(0, len(items), CLIP_BATCH):
            check_deadline()
            out.append(fn(items[start:start + CLIP_BATCH], batch_size))
        return np.concatenate(out) if out else fn(items, batch_size)

    def encode_images(self, images: Any, batch_size: int = 32) -> Any:
        return self._pieces(self._clip.encode_images, images, batch_size)

    def encode_texts(self, texts: Any, batch_size: int = 32) -> Any:
        return self._pieces(self._clip.encode_texts, texts, batch_size)


class NotReady(Exception):
    """The models are not loaded yet (HTTP 503)."""


class UnknownImage(Exception):
    """An ``image_id`` that is not (or no longer) in the cache (HTTP 404)."""


SEGMENT_KEYS = ("conf", "iou", "imgsz", "max_det", "retina")


class Engine:
    """Models, cache and pool shared by every request of one server."""

    def __init__(self, config: ServerConfig, model: Any = None):
        self.config = config
        self.model = model
        self.cache = ResultCache(config.cache_bytes)
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="fastsam-infer")
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.load_seconds: float | None = None
        self._pending = 0  # calls submitted to the pool and not finished (running + waiting)
        self._running = 0  # calls running in a worker
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future] = {}
        self._clips: dict[int, DeadlineClip] = {}
        #: runs made, requests answered from the result cache or from a run in flight, refusals
        self.counts = {"segment_runs": 0, "prompt_runs": 0, "cache_hits": 0, "shared_runs": 0, "busy": 0, "deadline": 0}
        if model is not None:
            self.ready.set()

    # -- start-up ---------------------------------------------------------------------------------------
    def load(self) -> None:
        """Create the FastSAM and CLIP objects (blocking); errors are kept in :attr:`error` and re-raised."""
        from .. import FastSAM

        t0 = time.perf_counter()
        try:
            model = FastSAM(self.config.model, providers=self.config.providers, clip=self.config.clip,
                            max_pixels=self.config.max_pixels)
            model.clip  # noqa: B018 - load CLIP now, not on the first text prompt
            self.model = model
            self.load_seconds = time.perf_counter() - t0
            self.ready.set()
        except BaseException as e:
            self.error = e
            raise

    def close(self, wait: bool = True) -> None:
        """Let running calls finish (``wait``) and stop the pool; queued calls not started are cancelled."""
        self.pool.shutdown(wait=wait, cancel_futures=True)

    def _require_ready(self) -> Any:
        if not self.ready.is_set():
            raise NotReady("the models are still loading: retry shortly (GET /readyz says when)")
        return self.model

    # -- the bounded pool ------------------------------------------------------------------------------
    async def run(self, fn: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
        """Run ``fn(*args)`` in the pool under the concurrency/queue bound and the deadline (monotonic s).

        The pool has ``concurrency`` workers, so at most that many calls run; calls submitted beyond them wait
        in the pool's queue, and at most ``concurrency + queue`` calls are submitted and unfinished at once
        (:class:`Busy` beyond). A call still waiting at its deadline is cancelled; a running one finishes and
        frees its place then, while the client already has its 504."""
        cfg = self.config
        with self._lock:
            if self._pending >= cfg.concurrency + cfg.queue:
                self.counts["busy"] += 1
                raise Busy(f"the server is busy ({cfg.concurrency} running, {cfg.queue} waiting): retry after {cfg.retry_after} s")
            self._pending += 1
        deadline = time.monotonic() + cfg.timeout if deadline is None else deadline
        limit = _Deadline(deadline, cfg.timeout)
        try:
            fut = self.pool.submit(self._started, limit, fn, *args)
        except RuntimeError:
            with self._lock:
                self._pending -= 1
            raise NotReady("the server is shutting down") from None
        fut.add_done_callback(self._finished)
        waited = asyncio.wrap_future(fut)
        waited.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even after a 504
        try:
            return await asyncio.wait_for(asyncio.shield(waited), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            limit.cancelled = True  # the worker stops at its next check
            fut.cancel()  # only succeeds while it waits in the queue
            with self._lock:
                self.counts["deadline"] += 1
            raise DeadlineExceeded(f"the request did not finish within the deadline of {cfg.timeout:g} s") from None

    def _started(self, limit: _Deadline, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            self._running += 1
        _local.deadline = limit
        try:
            check_deadline()
            return fn(*args)
        finally:
            _local.deadline = None
            with self._lock:
                self._running -= 1

    def clip(self) -> DeadlineClip:
        """The model's CLIP as :class:`DeadlineClip` (one wrapper per CLIP object)."""
        clip = self._require_ready().clip
        with self._lock:
            wrapped = self._clips.get(id(clip))
            if wrapped is None or wrapped._clip is not clip:
                wrapped = self._clips[id(clip)] = DeadlineClip(clip)
        return wrapped

    def prompt(self, result: Result, prompts: dict[str, Any]) -> Result:
        """``FastSAM.prompt(result, **prompts)`` with the deadline checked between CLIP batches (in a worker)."""
        from ..prompts import apply_prompts

        return apply_prompts(result, self.clip, **prompts)

    def _finished(self, _fut: Any) -> None:
        with self._lock:
            self._pending -= 1

    def load_info(self) -> dict[str, int]:
        """Calls running and waiting now, and the bounds."""
        with self._lock:
            running, pending = self._running, self._pending
        return {"running": running, "waiting": pending - running, "concurrency": self.config.concurrency,
                "queue": self.config.queue}

    # -- segment and prompt --------------------------------------------------------------------------------
    @staticmethod
    def image_id(data: bytes, settings: dict[str, Any]) -> str:
        """The cache key: SHA-256 of the image bytes and the segment settings, 32 hex digits."""
        h = hashlib.sha256(data)
        h.update(repr(sorted(settings.items())).encode())
        return h.hexdigest()[:32]

    def _segment_sync(self, data: bytes, settings: dict[str, Any]) -> Result:
        model = self._require_ready()
        image = decode_image_bytes(data, self.config.max_pixels)
        check_deadline()
        imgsz = settings.get("imgsz")
        result = model.segment(
            image, imgsz=tuple(imgsz) if isinstance(imgsz, list) else imgsz, conf=settings["conf"],
            iou=settings["iou"], max_det=settings["max_det"], retina_masks=settings["retina"],
        )
        with self._lock:
            self.counts["segment_runs"] += 1
        return result

    async def everything(self, data: bytes, settings: dict[str, Any], deadline: float | None = None) -> tuple[str, Result, bool]:
        """(image_id, segment-everything result, whether it came from the cache) for encoded image bytes."""
        self._require_ready()
        key = self.image_id(data, settings)
        hit = self.cache.get(key)
        if hit is not None:
            with self._lock:
                self.counts["cache_hits"] += 1
            return key, hit, True
        pending = self._inflight.get(key)
        if pending is not None:  # the same image and settings are being segmented: share that run
            with self._lock:
                self.counts["shared_runs"] += 1
            return key, await asyncio.shield(pending), True
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self.run(self._segment_sync, data, settings, deadline=deadline)
            self.cache.put(key, result)
            fut.set_result(result)
            return key, result, False
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight.pop(key, None)

    def cached(self, image_id: str) -> Result:
        """The cached everything result of ``image_id``; :class:`UnknownImage` when absent or evicted."""
        result = self.cache.get(image_id) if isinstance(image_id, str) else None
        if result is None:
            raise UnknownImage(
                f"unknown image_id {str(image_id)[:64]!r}: it was never segmented here or has been evicted from the "
                "cache: send the image again to POST /v1/segment"
            )
        return result

    def _finish_sync(self, image_id: str, result: Result, prompts: dict[str, Any], outputs: dict[str, Any],
                     extra: dict[str, Any] | None = None, t0: float | None = None,
                     own: dict[str, float] | None = None) -> bytes:
        from .render import result_json

        model = self._require_ready()
        t_prompt = time.perf_counter()
        if prompts:
            accepted = inspect.signature(model.prompt).parameters
            unknown = sorted(k for k in prompts if k not in accepted)
            if unknown:
                raise BadArgumentError(f"this runtime's prompt() does not take {', '.join(unknown)}")
            result = self.prompt(result, prompts)
            with self._lock:
                self.counts["prompt_runs"] += 1
        check_deadline()
        t_encode = time.perf_counter()
        out = result_json(result, image_id, **outputs)
        if own is not None:  # a cached result: this request's own stages, not the original run's
            timings = dict(own)
            if prompts:
                timings["prompt"] = (t_encode - t_prompt) * 1e3
            timings["encode"] = (time.perf_counter() - t_encode) * 1e3
            out["timings_ms"] = {k: round(v, 3) for k, v in timings.items()}
        out.update(extra or {})
        if t0 is not None:
            out["timings_ms"]["server_total"] = round((time.perf_counter() - t0) * 1e3, 3)
        return json.dumps(out, separators=(",", ":")).encode()  # here, in the pool: big RLE lists stay off the event loop

    async def finish(self, image_id: str, result: Result, prompts: dict[str, Any], outputs: dict[str, Any],
                     deadline: float | None = None, extra: dict[str, Any] | None = None, t0: float | None = None,
                     own: dict[str, float] | None = None) -> bytes:
        """Apply ``prompts`` (keyword arguments of ``FastSAM.prompt``; none: everything) to a cached result and
        render the JSON body (``outputs``: polygons, epsilon, overlay; ``extra`` keys added; ``t0``: the
        request's start, for ``timings_ms.server_total``), in the pool. ``own``: the request's own timings (ms)
        when ``result`` came from the cache; ``timings_ms`` is then ``own`` + ``prompt`` (when prompted) +
        ``encode`` (building the response) + ``server_total``, not the original run's stages."""
        out = await self.run(self._finish_sync, image_id, result, prompts, outputs, extra, t0, own, deadline=deadline)
        if prompts.get("texts") is not None:
            self.cache.touch(image_id)  # its CLIP crop embeddings are cached on it now
        return out
