"""``fastsam-onnx serve``: the HTTP API, X-AnyLabeling's remote-server protocol and the browser page.

Safe by default: binds 127.0.0.1; a non-loopback ``--host`` without an API key (``--api-key`` or
``$FASTSAM_ONNX_API_KEY``) is refused unless ``--insecure``; Host header checked; CORS closed unless
``--cors-origin``. FastAPI and uvicorn are imported only in :func:`run` (the ``[server]`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import signal
import sys

from .models import CLIP_HELP, MODEL_HELP


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve the HTTP API, X-AnyLabeling's remote-server protocol and a browser page",
        description="Serve FastSAM over HTTP: POST /v1/segment, POST /v1/prompt (cached images), X-AnyLabeling's "
        "/v1/models + /v1/predict, and an interactive page at /. One model object shared by all requests.",
    )
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--clip", help=CLIP_HELP)
    p.add_argument("--providers", default=None, help="execution providers: auto (default), cpu, cuda, tensorrt or a comma list")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=None, help="require this key on /v1/ (default: $FASTSAM_ONNX_API_KEY; none)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    p.add_argument("--max-upload-mb", type=float, default=32, help="request bodies over this many MiB get 413 (default 32)")
    p.add_argument("--max-megapixels", type=float, default=100, help="images over this many megapixels get 413 (default 100)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow this browser origin (repeatable; default: none)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME", help="also accept this Host header name (repeatable)")
    p.add_argument("--label-studio-url", default=None, metavar="URL", help="Label Studio's URL, where task images are fetched (default: $LABEL_STUDIO_URL, else the hostname Label Studio sends to /labelstudio/setup)")
    p.add_argument("--label-studio-api-key", default=None, metavar="TOKEN", help="Label Studio token for fetching task images, legacy or personal access token (default: $LABEL_STUDIO_API_KEY, else the one sent to /labelstudio/setup)")
    p.add_argument("--label-studio-image-host", action="append", default=[], metavar="NAME", help="also fetch task images given as absolute URLs on this host, without credentials (repeatable; '*': any host; default: only Label Studio's)")
    p.add_argument("--concurrency", type=int, default=1, help="inferences running at once (default 1)")
    p.add_argument("--queue", type=int, default=8, help="requests waiting for a slot; beyond: 429 (default 8)")
    p.add_argument("--timeout", type=float, default=60, help="per-request deadline in seconds; beyond: 504 (default 60)")
    p.add_argument("--cache-mb", type=float, default=256, help="bound of the image_id result cache, MiB (default 256)")
    p.add_argument("--header-timeout", type=float, default=10, help="a request's headers must arrive within this many seconds; else 408 and the connection is closed (default 10)")
    p.add_argument("--min-upload-rate", type=float, default=64, metavar="KIB_S", help="request bodies slower than this many KiB/s on average (after --header-timeout seconds) get 408 and the connection is closed (default 64)")
    p.add_argument("--keep-alive", type=float, default=5, help="close connections idle between requests after this many seconds (default 5)")
    p.add_argument("--max-connections", type=int, default=None, help="open connections at most; beyond, the oldest idle one is closed, or the new one gets 503 (default: 1000, less when the file limit is lower)")
    p.add_argument("--drain-seconds", type=float, default=30, help="on SIGTERM, wait at most this long for requests in flight (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="no access log")
    p.set_defaults(run=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def config_from_args(args: argparse.Namespace):
    """The :class:`~fastsam_onnx.server.ServerConfig` of the command line, after checking it."""
    from .usage import UsageError
    from ..server.engine import ServerConfig

    key = args.api_key if args.api_key is not None else os.environ.get("FASTSAM_ONNX_API_KEY") or None
    if not _is_loopback(args.host) and not key and not args.insecure:
        raise UsageError(
            f"--host {args.host} is reachable from other machines: set an API key (--api-key or $FASTSAM_ONNX_API_KEY), "
            "or pass --insecure to serve without one"
        )
    for name, value, lo in (("--concurrency", args.concurrency, 1), ("--queue", args.queue, 0), ("--port", args.port, 0)):
        if value < lo:
            raise UsageError(f"{name} must be >= {lo}, got {value}")
    if args.port > 65535:
        raise UsageError(f"--port must be <= 65535, got {args.port}")
    for name, value in (("--max-upload-mb", args.max_upload_mb), ("--max-megapixels", args.max_megapixels),
                        ("--timeout", args.timeout), ("--drain-seconds", args.drain_seconds),
                        ("--header-timeout", args.header_timeout), ("--min-upload-rate", args.min_upload_rate),
                        ("--keep-alive", args.keep_alive)):
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{name} must be a finite number > 0, got {value}")
    if not (args.cache_mb >= 0 and math.isfinite(args.cache_mb)):
        raise UsageError(f"--cache-mb must be a finite number >= 0, got {args.cache_mb}")
    return ServerConfig(
        model=args.model, clip=args.clip, providers=args.providers, host=args.host, port=args.port, api_key=key,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6),
        cors_origins=list(args.cors_origin), allowed_hosts=list(args.allowed_host), concurrency=args.concurrency,
        queue=args.queue, timeout=float(args.timeout), cache_bytes=int(args.cache_mb * 2**20),
        label_studio_url=_label_studio_url(args), label_studio_image_hosts=list(args.label_studio_image_host),
        label_studio_api_key=args.label_studio_api_key or os.environ.get("LABEL_STUDIO_API_KEY") or None,
    )


def run(args: argparse.Namespace) -> int:
    from .extras import require

    require("server", "fastapi", "uvicorn", "multipart", what="fastsam-onnx serve")
    config = config_from_args(args)
    import uvicorn

    from ..server.transport import ConnectionTable, TransportLimits, default_max_connections, guarded_protocol, listen_sockets
    from .usage import UsageError

    bound = default_max_connections()
    if args.max_connections is not None and not 1 <= args.max_connections <= bound:
        raise UsageError(f"--max-connections must be in [1, {bound}] (the file limit, ulimit -n, allows {bound}), "
                         f"got {args.max_connections}")
    limits = TransportLimits(header_timeout=args.header_timeout, min_body_rate=args.min_upload_rate * 1024,
                             write_timeout=max(args.timeout, 10.0), max_connections=args.max_connections or bound)
    table = ConnectionTable(limits.max_connections)
    try:
        sockets = listen_sockets(config.host, config.port, table)
    except OSError as e:
        raise UsageError(f"cannot listen on {config.host} port {config.port}: {e.strerror or e}") from None

    from ..server.app import create_app
    from ..server.engine import Engine
    from ..zoo import MODEL_ENV, env_setting
    from .models import DEMO_NOTICE

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # SIGTERM: drain, then exit 0 (uvicorn would re-raise it: status -15)
            with super().capture_signals():
                yield
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    engine = Engine(config)
    app = create_app(config, engine)
    server = Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning" if args.quiet else "info",
        access_log=not args.quiet, timeout_graceful_shutdown=args.drain_seconds, limit_concurrency=None,
        server_header=False, proxy_headers=False, http=guarded_protocol(limits, table), timeout_keep_alive=args.keep_alive,
    ))

    def failed(_e: BaseException) -> None:
        server.should_exit = True

    engine.on_load_error = failed
    print(f"fastsam-onnx serve: http://{config.host if ':' not in config.host else f'[{config.host}]'}:{config.port}/ "
          f"(API key {'required' if config.api_key else 'not set'}; loading the models)", file=sys.stderr, flush=True)
    if not args.quiet and config.model is None and env_setting(MODEL_ENV) is None:
        print(DEMO_NOTICE, file=sys.stderr, flush=True)
    server.run(sockets=sockets)
    if engine.error is not None:
        raise engine.error
    return 0


def _label_studio_url(args: argparse.Namespace) -> str | None:
    """--label-studio-url or $LABEL_STUDIO_URL, checked: an http(s) URL."""
    from urllib.parse import urlsplit

    from .usage import UsageError

    url = args.label_studio_url or os.environ.get("LABEL_STUDIO_URL") or None
    if url is not None and (urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).hostname):
        raise UsageError(f"--label-studio-url (or $LABEL_STUDIO_URL) must be an http(s) URL, got {url!r}")
    return url
