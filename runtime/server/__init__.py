"""``fastsam-onnx serve``: the HTTP server (FastAPI + uvicorn, the ``[server]`` extra).

* :mod:`.app` — routes, error mapping (``create_app``); :mod:`.engine` — the shared FastSAM/CLIP, the bounded
  inference pool, the deadline; :mod:`.cache` — the ``image_id`` LRU bounded in bytes; :mod:`.limits` — Host
  header, API key, streaming body limit; :mod:`.images` — uploaded bytes → image with the header checks;
  :mod:`.schemas` — request bodies; :mod:`.render` — result JSON; :mod:`.anylabeling` — X-AnyLabeling's
  remote-server protocol; :mod:`.labelstudio` — Label Studio's ML-backend protocol (:mod:`.lsregions`, :mod:`.lsimages`);
  ``page/`` — the browser page (static HTML + JS, no CDN, no build step).

``import fastsam_onnx`` never imports this package (nor FastAPI). Without the ``[server]`` extra, importing it (or
any of its modules) raises :class:`~fastsam_onnx.errors.MissingExtraError`, one line naming the extra.
"""

from ..extras import require_extra

require_extra("server", "fastapi", "starlette", "pydantic", what="fastsam_onnx.server")

from .engine import Engine, ServerConfig  # noqa: E402

__all__ = ["Engine", "ServerConfig", "create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - see app.create_app
    """See :func:`fastsam_onnx.server.app.create_app`."""
    from .app import create_app as _create

    return _create(*args, **kwargs)
