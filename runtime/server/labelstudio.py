"""Label Studio's ML-backend protocol (``label_studio_ml/api.py`` of ``label-studio-ml-backend``; the caller is
``label_studio/ml/api_connector.py``), under ``/labelstudio``: the backend URL to give Label Studio is
``http://HOST:PORT/labelstudio``. The same cache, pool, limits, API key and deadline as ``/v1/segment``.

* ``GET /labelstudio/health`` → ``{"status": "UP", "model_version"}`` (503 while the models load).
* ``POST /labelstudio/setup`` ``{project, schema, hostname, access_token, extra_params}`` → ``{"model_version"}``:
  remembers, per project, the Label Studio host and token its images are fetched with and the ``extra_params``
  (:class:`ExtraParams`); 422 when the labeling config has no brush or polygon control on an image.
* ``POST /labelstudio/predict`` ``{tasks, project, label_config, params: {context}}`` →
  ``{"results": [{result, score, model_version}, ...], "model_version"}``, one entry per task, in order. Without
  ``context.result``: every instance (or the text prompts' picks), pre-annotation; with it (interactive mode, one
  task): the instances the smart keypoints / rectangles select. A task whose image cannot be fetched or decoded, or
  that misses the deadline, gets ``{"task", "error": {"code", "message"}}`` — no ``result`` key, so Label Studio
  stores no prediction for it and a later "Retrieve predictions" tries it again — never a 500.
* ``POST /labelstudio/webhook`` is acknowledged (FastSAM does not train); ``GET /labelstudio/versions``.

Label Studio authenticates to a backend with HTTP Basic auth only: with ``--api-key`` set, give the key as the
password (any user name) in the backend's "Basic auth" settings.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BadArgumentError, BadImageError, FastSAMError, ImageTooLargeError
from ..result import Result
from .engine import Busy, DeadlineExceeded, Engine, ServerConfig
from .lsimages import ImageFetchError, LabelStudioAuth, fetch, resolve
from .lsregions import LabelConfig, context_prompts, parse_config, regions

__all__ = ["ExtraParams", "router"]
log = logging.getLogger("fastsam_onnx.server")
_PROJECTS = 256  # projects remembered from /setup (least recently set up dropped first)
_URLS = 4096  # image references remembered with their image_id (a repeated click skips the fetch)


class ExtraParams(BaseModel):
    """The backend's "extra params" in Label Studio (a JSON object, sent with ``/setup``)."""

    model_config = ConfigDict(extra="forbid")

    conf: Optional[float] = Field(None, description="confidence threshold (default 0.4)")
    iou: Optional[float] = Field(None, description="NMS IoU threshold (default 0.9)")
    imgsz: Optional[Union[int, list[int]]] = Field(None, description="inference size (default: the model's)")
    max_det: Optional[int] = Field(None, description="at most this many instances (default 300)")
    texts: Optional[Union[str, list[str], dict[str, str]]] = Field(
        None, description="pre-annotate with text prompts instead of every instance: 'a, b', [texts] or {label: text}")
    point_mode: Optional[str] = Field(None, description="how smart keypoints combine: select (default), merge, each")
    epsilon: float = Field(0.001, ge=0, le=1, description="polygon simplification relative to the perimeter")


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project: Union[str, int, None] = None
    schema_: Optional[str] = Field(None, alias="schema")
    hostname: Optional[str] = None
    access_token: Optional[str] = None
    extra_params: Optional[Union[dict[str, Any], str]] = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tasks: list[dict[str, Any]] = Field(..., max_length=10000)
    project: Union[str, int, None] = None
    label_config: Optional[str] = None
    params: Optional[dict[str, Any]] = None


@dataclass
class _Project:
    hostname: str | None = None
    token: str | None = None
    extra: ExtraParams = field(default_factory=ExtraParams)


def _extra(value: Any) -> ExtraParams:
    if value in (None, "", {}):
        return ExtraParams()
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise BadArgumentError("extra_params must be a JSON object") from None
    try:
        return ExtraParams.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "extra_params"
        raise BadArgumentError(f"extra_params {where}: {first.get('msg', 'invalid')}") from None


def _host(url: Any) -> str | None:
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.strip():
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadArgumentError(f"the Label Studio hostname must be an http(s) URL, got {url[:120]!r}")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"


def _texts(extra: ExtraParams, cfg: LabelConfig) -> dict[str, str]:
    """Text prompt → label, from the config's ``prompt`` attributes and ``extra_params.texts``."""
    out = {text: label for label, text in cfg.control.prompts.items()}
    t = extra.texts
    if isinstance(t, dict):
        out.update({text: label for label, text in t.items() if text.strip()})
    elif t:
        default = cfg.control.labels[0] if cfg.control.labels else "Object"
        for text in (t.split(",") if isinstance(t, str) else t):
            if text.strip():
                out[text.strip()] = default
    return out


def _task_error(task: dict[str, Any], e: BaseException) -> dict[str, Any]:
    if isinstance(e, ImageFetchError):
        code = e.code
    elif isinstance(e, ImageTooLargeError):
        code = "too_large"
    else:
        code = {Busy: "busy", DeadlineExceeded: "deadline"}.get(type(e), "bad_image" if isinstance(e, BadImageError) else "bad_request")
    log.warning("Label Studio task %s: %s", task.get("id"), e)
    return {"task": task.get("id"), "error": {"code": code, "message": str(e)}}


def _render(engine: Engine, result: Result, prompts: dict[str, Any], cfg: LabelConfig, chosen: str | None,
            text_labels: dict[str, str], epsilon: float) -> list[dict[str, Any]]:
    if prompts:
        result = engine.model.prompt(result, **prompts)
    return regions(result, cfg, chosen, text_labels, epsilon)


class _State:
    """Per-server state of the Label Studio routes: projects from /setup, image references seen, tokens."""

    def __init__(self) -> None:
        self.projects: OrderedDict[str, _Project] = OrderedDict()
        self.urls: OrderedDict[tuple, str] = OrderedDict()
        self.auth = LabelStudioAuth()
        self.lock = threading.Lock()

    @staticmethod
    def _remember(store: OrderedDict, key: Any, value: Any, bound: int) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > bound:
            store.popitem(last=False)

    def project(self, key: Any) -> _Project:
        with self.lock:
            return self.projects.get(str(key)) or _Project()

    def set_project(self, key: Any, value: _Project) -> None:
        with self.lock:
            self._remember(self.projects, str(key), value, _PROJECTS)

    def image_id(self, key: tuple) -> str | None:
        with self.lock:
            return self.urls.get(key)

    def set_image_id(self, key: tuple, image_id: str) -> None:
        with self.lock:
            self._remember(self.urls, key, image_id, _URLS)


def router(engine: Engine, config: ServerConfig) -> APIRouter:
    """The ``/labelstudio`` routes."""
    r = APIRouter(prefix="/labelstudio", tags=["Label Studio"])
    state = _State()
    hosts = tuple(config.label_studio_image_hosts)

    def version() -> str:
        return engine._require_ready().onnx_path.parent.name

    def origin(project: _Project) -> tuple[str | None, str | None]:
        url = _host(config.label_studio_url) or project.hostname
        return url, config.label_studio_api_key or project.token

    async def one(task: dict[str, Any], cfg: LabelConfig, project: _Project, context: list[Any] | None,
                  deadline: float) -> dict[str, Any]:
        data = task.get("data")
        ref = data.get(cfg.image_key) if isinstance(data, dict) else None
        ex = project.extra
        settings = {"conf": 0.4 if ex.conf is None else ex.conf, "iou": 0.9 if ex.iou is None else ex.iou,
                    "imgsz": ex.imgsz, "max_det": 300 if ex.max_det is None else ex.max_det, "retina": True}
        ls_url, token = origin(project)
        key = (ls_url, ref, repr(sorted(settings.items()))) if isinstance(ref, str) and len(ref) < 4096 else None
        image_id = state.image_id(key) if key else None
        result = engine.cache.get(image_id) if image_id else None
        if result is None:
            src = resolve(ref, ls_url, hosts)
            raw = await asyncio.to_thread(fetch, src, ls_url, token, state.auth, config.max_upload_bytes, deadline)
            image_id, result, _ = await engine.everything(raw, settings, deadline)
            if key and src.data is None:
                state.set_image_id(key, image_id)
        h0, w0 = result.orig_shape
        chosen, text_labels, prompts = None, {}, {}
        if context:
            prompts, chosen = context_prompts(context, w0, h0)
            if ex.point_mode is not None and "points" in prompts:
                prompts["point_mode"] = ex.point_mode
        else:
            text_labels = _texts(ex, cfg)
            if text_labels:
                prompts = {"texts": list(text_labels)}
        out = await engine.run(_render, engine, result, prompts, cfg, chosen, text_labels, ex.epsilon, deadline=deadline)
        if "texts" in prompts:
            engine.cache.touch(image_id)  # its CLIP crop embeddings are cached on it now
        score = sum(x["score"] for x in out) / len(out) if out else 0.0
        return {"result": out, "score": round(score, 4), "model_version": version()}

    @r.get("/health", summary="Label Studio: the backend is up (503 while the models load)")
    async def health() -> dict[str, Any]:
        return {"status": "UP", "model_class": "FastSAM", "model_version": version()}

    @r.post("/setup", summary="Label Studio: connect a project (its labeling config, host, token, extra params)")
    async def setup(req: SetupRequest) -> dict[str, Any]:
        if req.schema_:
            parse_config(req.schema_)  # refuse a config FastSAM cannot write to now, when the backend is connected
        project = _Project(_host(req.hostname), req.access_token or None, _extra(req.extra_params))
        state.set_project(req.project, project)
        return {"model_version": version()}

    @r.post("/predict", summary="Label Studio: pre-annotations of tasks, or an interactive region from smart tools")
    async def predict(req: PredictRequest) -> dict[str, Any]:
        deadline = time.monotonic() + config.timeout
        model_version = version()
        cfg = parse_config(req.label_config or "")
        project = state.project(req.project)
        context = (req.params or {}).get("context")
        smart = context.get("result") if isinstance(context, dict) else None
        if smart is not None and not isinstance(smart, list):
            raise BadArgumentError("params.context.result must be a list of regions")
        results = []
        for task in req.tasks:
            if time.monotonic() > deadline:
                results.append(_task_error(task, DeadlineExceeded(f"not reached within the request's deadline of {config.timeout:g} s")))
                continue
            try:
                results.append(await one(task, cfg, project, smart or None, deadline))
            except (FastSAMError, Busy, DeadlineExceeded) as e:
                results.append(_task_error(task, e))
        return {"results": results, "model_version": model_version}

    @r.post("/webhook", summary="Label Studio: events are acknowledged (FastSAM is not trained here)")
    async def webhook(body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        return {"status": "acknowledged", "action": action if isinstance(action, str) else None, "training": False}

    @r.get("/versions", summary="Label Studio: the model versions this backend offers")
    async def versions() -> dict[str, Any]:
        return {"versions": [version()], "model_version": version()}

    return r
