"""The FastAPI application: routes, error mapping and the guards of :mod:`fastsam_onnx.server.limits`.

Routes: ``GET /`` (the browser page), ``GET /healthz``, ``GET /readyz``, ``GET /v1/info``, ``POST /v1/segment``
(multipart upload or JSON with base64), ``POST /v1/prompt`` (``image_id`` + prompts, from the result cache),
and X-AnyLabeling's ``GET /v1/models`` / ``POST /v1/predict`` (:mod:`fastsam_onnx.server.anylabeling`).
Errors are always ``{"error": {"code", "message"}}``: 400 undecodable image / malformed request, 401 API key,
404 unknown route or ``image_id``, 405, 413 body or image too large, 415, 422 bad settings or prompts (the
runtime's message), 429 busy (``Retry-After``), 503 not ready, 504 deadline, 500 internal (no traceback).
Label Studio's ML-backend protocol is under ``/labelstudio`` (:mod:`fastsam_onnx.server.labelstudio`), the only
routes that fetch images by URL: from the Label Studio host, other hosts only when allowed (no SSRF).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import BadArgumentError, BadImageError, BadPromptError, FastSAMError
from .bodies import PROMPT_BODY_BYTES, content_type, read_form, read_json, validation_message
from .engine import Busy, DeadlineExceeded, Engine, NotReady, ServerConfig, UnknownImage
from .images import ImageTooLargeError, decode_base64
from .limits import LOOPBACK_NAMES, ApiKeyCheck, BodyLimit, CutOff, HostCheck, JSONCORS
from .schemas import ErrorResponse, PromptRequest, SegmentJSON, SegmentOptions

log = logging.getLogger("fastsam_onnx.server")
# the page loads only its own script and talks only to this server; it cannot be framed by other sites
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
                 "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_ERRORS: dict[int | str, dict[str, Any]] = {k: {"model": ErrorResponse} for k in (400, 401, 404, 413, 415, 422, 429, 503, 504)}
_GET_ERRORS: dict[int | str, dict[str, Any]] = {k: {"model": ErrorResponse} for k in (400, 401, 503)}
_ERRORS[200] = {"description": "the instance JSON of the CLI (image, mask_size, instances with box, score, area, COCO RLE "
                "segmentation; polygons on request), timings_ms, image_id, cached; overlay_png on request",
                "content": {"application/json": {"schema": {"type": "object"}}}}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _refusal(status: int, code: str, headers: dict[str, str] | None):
    """An exception handler answering ``status`` with the JSON error ``code`` and the exception's message."""

    async def handle(_r: Request, e: Exception) -> JSONResponse:
        return error(status, code, str(e), headers)

    return handle


def _install_errors(app: FastAPI, config: ServerConfig) -> None:
    retry = {"Retry-After": str(config.retry_after)}

    @app.exception_handler(FastSAMError)
    async def _fastsam(_r: Request, e: FastSAMError) -> JSONResponse:
        if isinstance(e, ImageTooLargeError):
            return error(413, "too_large", str(e))
        if isinstance(e, BadImageError):
            return error(400, "bad_image", str(e))
        if isinstance(e, BadPromptError):
            return error(422, "bad_prompt", str(e))
        if isinstance(e, BadArgumentError):
            return error(422, "bad_argument", str(e))
        return error(422, "bad_request", str(e))

    # the engine's own refusals: status, code, and whether the client should retry later
    for exc, (status, code, headers) in {
        Busy: (429, "busy", retry),
        DeadlineExceeded: (504, "deadline", None),
        NotReady: (503, "not_ready", retry),
        UnknownImage: (404, "unknown_image", None),
    }.items():
        app.add_exception_handler(exc, _refusal(status, code, headers))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, e: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", validation_message(list(e.errors())))

    @app.exception_handler(ClientDisconnect)
    async def _gone(_r: Request, _e: ClientDisconnect) -> JSONResponse:  # nobody reads it: no error logged
        return error(400, "client_disconnected", "the client closed the connection before its request was complete")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "too_large"}
        return error(e.status_code, codes.get(e.status_code, f"http_{e.status_code}"), str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_r: Request, e: Exception) -> JSONResponse:
        log.error("internal error", exc_info=e)
        return error(500, "internal", f"internal error ({type(e).__name__}); see the server log")


async def _segment_input(request: Request, config: ServerConfig) -> tuple[bytes, SegmentOptions]:
    """(image bytes, options) from a multipart upload (``image`` file + fields) or a JSON body."""
    ctype = content_type(request)
    if ctype == "multipart/form-data":
        return await read_form(request, SegmentOptions)
    if ctype == "application/json":
        req = await read_json(request, SegmentJSON, config.max_upload_bytes)
        return decode_base64(req.image), SegmentOptions.model_validate(req.model_dump(exclude={"image"}))
    raise StarletteHTTPException(415, "send multipart/form-data (an 'image' file) or application/json (base64 'image')")


def _segment_openapi() -> dict[str, Any]:
    """The request body of /v1/segment: JSON (SegmentJSON) or multipart, its fields typed as what they carry."""
    fields = dict(SegmentOptions.model_json_schema()["properties"])
    for k, v in fields.items():  # a form field is sent or left out: no null, no default in the form
        v.pop("title", None)
        v.pop("default", None)
        options = [o for o in v.get("anyOf", ()) if o.get("type") != "null"]
        if "anyOf" in v and len(options) == 1:
            fields[k] = {**{x: y for x, y in v.items() if x != "anyOf"}, **options[0]}
        elif "anyOf" in v:
            v["anyOf"] = options
    json_fields = {k: {"contentType": "application/json"} for k in fields if k not in ("texts", "point_mode", "text_mode")}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/SegmentJSON"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "additionalProperties": False,
                                           "properties": {"image": {"type": "string", "format": "binary"}, **fields}},
                                "encoding": json_fields},
    }}}


def _json_body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}}


def _install_openapi(app: FastAPI, models: tuple[type, ...]) -> None:
    """The spec, with the request bodies parsed by :mod:`.bodies` (not by FastAPI) defined in its components."""
    from fastapi.openapi.utils import get_openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(js.pop("$defs", {}))
                schemas[model.__name__] = js
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"fastsam-onnx": __version__}
    for dist in ("onnxruntime", "onnxruntime-gpu", "numpy", "opencv-python-headless", "fastapi", "uvicorn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def create_app(config: ServerConfig | None = None, engine: Engine | None = None) -> FastAPI:
    """The application for ``config``; ``engine`` (shared models, cache, pool) is created when None and its
    models are loaded in a background thread at start-up (``/readyz`` answers 503 until then)."""
    config = config or ServerConfig()
    engine = engine or Engine(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if not engine.ready.is_set() and engine.error is None:
            threading.Thread(target=_load_quietly, args=(engine,), name="fastsam-load", daemon=True).start()
        yield
        engine.close(wait=True)

    app = FastAPI(title="fastsam-onnx", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="FastSAM on ONNX Runtime: segment everything, then prompt the cached result by box, point or text.")
    app.state.engine = engine
    _install_errors(app, config)
    from .anylabeling import PredictRequest
    from .anylabeling import router as anylabeling_router

    @app.get("/healthz", summary="the process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="200 once the models are loaded, 503 before", responses={503: {"model": ErrorResponse}})
    async def readyz() -> Any:
        if engine.error is not None:
            return error(503, "load_failed", f"the models failed to load: {engine.error}")
        if not engine.ready.is_set():
            return error(503, "not_ready", "the models are still loading", {"Retry-After": "1"})
        return {"status": "ready"}

    @app.get("/v1/info", summary="model, manifest summary, providers in use, limits, versions", responses=_GET_ERRORS)
    async def info() -> dict[str, Any]:
        model = engine._require_ready()
        m = model.manifest
        clip = getattr(model, "_clip", None)
        return {
            "model": {"file": model.onnx_path.name, "bundle": model.onnx_path.parent.name, "imgsz": list(model.imgsz),
                      "dynamic": model.dynamic, "providers": model.providers,
                      "manifest": {k: m.get(k) for k in ("kind", "imgsz", "dynamic", "batch", "precision", "opset", "source") if k in m}},
            "clip": None if clip is None else {"bundle": clip.bundle.name, "precision": clip.precision,
                                                "embed_dim": clip.embed_dim, "providers": clip.image_session.providers},
            "limits": {"max_upload_bytes": config.max_upload_bytes, "max_pixels": config.max_pixels,
                       "concurrency": config.concurrency, "queue": config.queue, "timeout_s": config.timeout},
            "cache": engine.cache.stats(), "load": engine.load_info(), "versions": _versions(),
        }

    @app.post("/v1/segment", summary="segment an image (multipart 'image' file, or JSON with base64 'image')",
              openapi_extra=_segment_openapi(), responses=_ERRORS)
    async def segment(request: Request) -> Response:
        t0 = time.perf_counter()
        deadline = time.monotonic() + config.timeout
        data, opts = await _segment_input(request, config)
        t1 = time.perf_counter()
        image_id, result, cached = await engine.everything(data, opts.settings(), deadline)
        own = {"decode": (t1 - t0) * 1e3, "lookup": (time.perf_counter() - t1) * 1e3} if cached else None
        body = await engine.finish(image_id, result, opts.prompt_kwargs(), _outputs(opts), deadline, {"cached": cached}, t0, own)
        return Response(body, media_type="application/json")

    @app.post("/v1/prompt", summary="prompts on a cached image (its image_id from /v1/segment)", responses=_ERRORS,
              openapi_extra=_json_body("PromptRequest"))
    async def prompt(request: Request) -> Response:
        t0 = time.perf_counter()
        req = await read_json(request, PromptRequest, PROMPT_BODY_BYTES)
        engine._require_ready()
        t1 = time.perf_counter()
        result = engine.cached(req.image_id)
        own = {"lookup": (time.perf_counter() - t1) * 1e3}
        deadline = time.monotonic() + config.timeout
        body = await engine.finish(req.image_id, result, req.prompt_kwargs(), _outputs(req), deadline, {"cached": True}, t0, own)
        return Response(body, media_type="application/json")

    app.include_router(anylabeling_router(engine, config))
    from .labelstudio import router as labelstudio_router

    app.include_router(labelstudio_router(engine, config))  # Label Studio's ML-backend protocol under /labelstudio

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(page_file("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/app.js", include_in_schema=False)
    async def script() -> Response:
        return Response(page_file("app.js"), media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)

    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(ApiKeyCheck, key=config.api_key, prefixes=("/v1/", "/labelstudio/"))
    if config.cors_origins:
        app.add_middleware(JSONCORS, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type", "x-api-key", "token"], max_age=600)
    app.add_middleware(HostCheck, allowed=allowed_hosts(config))
    app.add_middleware(CutOff)
    _install_openapi(app, (SegmentJSON, PromptRequest, PredictRequest))
    return app


def allowed_hosts(config: ServerConfig) -> list[str]:
    """Host header names served: the bound host, localhost, 127.0.0.1, ::1 and ``--allowed-host`` names."""
    return [config.host, *LOOPBACK_NAMES, *config.allowed_hosts]


def _outputs(opts: Any) -> dict[str, Any]:
    return {"polygons": opts.polygons, "epsilon": opts.epsilon, "overlay": opts.overlay}


def _load_quietly(engine: Engine) -> None:
    try:
        engine.load()
    except BaseException as e:  # kept in engine.error: /readyz reports it, the serve command exits with it
        log.error("loading the models failed: %s", e)
        callback = getattr(engine, "on_load_error", None)
        if callback is not None:
            callback(e)


def page_file(name: str) -> bytes:
    """A file of the shipped browser page (``index.html``, ``app.js``)."""
    return resources.files("fastsam_onnx.server").joinpath("page", name).read_bytes()
