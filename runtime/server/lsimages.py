"""Images of Label Studio tasks: where an image reference may be fetched from, with which credentials, and the fetch.

A task's image is what Label Studio stores in ``task["data"]``: a path on the Label Studio host (``/data/upload/...``,
``/data/local-files/?d=...``, ``/tasks/ID/resolve/?fileuri=...``), an absolute ``http(s)`` URL, or a ``data:`` URI.

* Paths, and absolute URLs on the Label Studio host itself (same scheme, host and port), are fetched from that host
  with its token: ``Authorization: Token KEY`` for a legacy token, and for a personal access token (a JWT refresh
  token) ``Authorization: Bearer ACCESS`` with the access token from ``POST /api/token/refresh/`` (kept until it
  expires; refreshed once on a 401).
* Absolute URLs on any other host are refused (no server-side request forgery) unless the operator named the host
  (``--label-studio-image-host NAME``; ``*`` for any); they are fetched without credentials.
* ``data:`` URIs are decoded in place; other schemes (``s3://``, ``gs://``, ``file:``) are refused.

Fetches follow no redirect, use no proxy, stop reading past the upload limit (413) and give up at the request's
deadline. Failures are :class:`ImageFetchError` (or :class:`~fastsam_onnx.errors.ImageTooLargeError`), which the
Label Studio routes turn into the task's error entry.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import BadImageError, ImageTooLargeError
from .images import decode_base64

__all__ = ["ImageFetchError", "ImageRefusedError", "Source", "LabelStudioAuth", "resolve", "fetch"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 1 << 16


class ImageFetchError(BadImageError):
    """The task's image could not be fetched (unreachable host, HTTP error, timeout)."""

    code = "image_unreachable"


class ImageRefusedError(ImageFetchError):
    """The task's image reference points somewhere this server does not fetch from (another host, a scheme)."""

    code = "image_refused"


@dataclass(frozen=True)
class Source:
    """Where one image comes from: ``url`` to fetch (None for ``data``), and whether to send Label Studio's token."""

    url: str | None
    with_token: bool = False
    data: bytes | None = None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise ImageRefusedError(f"the image URL has a bad port: {url[:120]!r}") from None
    return scheme, (parts.hostname or "").lower(), port


def _allowed(url: str, hosts: tuple[str, ...]) -> bool:
    scheme, host, port = _origin(url)
    for h in hosts:
        h = h.strip().lower()
        if h == "*" or h == host or h == f"{host}:{port}" or (h.startswith("[") and h.strip("[]") == host):
            return True
    return False


def resolve(ref: object, ls_url: str | None, hosts: tuple[str, ...] = ()) -> Source:
    """The :class:`Source` of the image reference ``ref`` of a task, for the Label Studio host ``ls_url``
    (``http(s)://host[:port]``, None when unknown) and the operator's allowed ``hosts``."""
    if not isinstance(ref, str) or not ref.strip():
        raise BadImageError("the task has no image reference (its data field for the <Image> tag is empty or not a string)")
    ref = ref.strip()
    if ref[:5].lower() == "data:":
        return Source(None, data=decode_base64(ref))
    if ref.startswith("/") and not ref.startswith("//") and "\\" not in ref:
        if not ls_url:
            raise ImageRefusedError(f"the image {ref[:120]!r} is a path on the Label Studio host, which is not known: "
                                    "connect the backend from Label Studio (POST /setup) or start the server with "
                                    "--label-studio-url URL")
        return Source(ls_url.rstrip("/") + ref, with_token=True)
    scheme = urlsplit(ref).scheme.lower()
    if scheme not in ("http", "https"):
        raise ImageRefusedError(f"the image {ref[:120]!r} is not an http(s) URL, a /data/... path or a data: URI "
                                "(cloud storage: let Label Studio serve it, so tasks hold /tasks/.../resolve/ paths)")
    if ls_url and _origin(ref) == _origin(ls_url):
        return Source(ref, with_token=True)
    if _allowed(ref, hosts):
        return Source(ref)
    raise ImageRefusedError(f"the image host of {ref[:120]!r} is not allowed: this server fetches only from the Label "
                            "Studio host; start it with --label-studio-image-host NAME to allow another host")


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        head = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(head, dict) and "alg" in head


def _jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (seconds since the epoch), or 5 minutes from now when it has none."""
    try:
        body = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).get("exp")
        return float(exp)
    except (ValueError, IndexError, TypeError, AttributeError):
        return time.time() + 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        return None  # the 3xx comes back as an HTTPError: a redirect could lead anywhere


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


class LabelStudioAuth:
    """The ``Authorization`` header for a Label Studio token; personal access tokens are exchanged for access
    tokens (cached per host and token until 30 s before they expire). Thread-safe."""

    def __init__(self) -> None:
        self._access: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def header(self, ls_url: str, token: str, timeout: float, renew: bool = False) -> str:
        if not _is_jwt(token):
            return f"Token {token}"
        key = (ls_url.rstrip("/"), token)
        with self._lock:
            hit = self._access.get(key)
        if hit is not None and not renew and hit[1] - 30 > time.time():
            return f"Bearer {hit[0]}"
        req = urllib.request.Request(key[0] + "/api/token/refresh/", data=json.dumps({"refresh": token}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                access = json.loads(resp.read(1 << 16)).get("access")
        except urllib.error.HTTPError as e:
            raise ImageFetchError(f"Label Studio refused the personal access token (HTTP {e.code} from "
                                  "/api/token/refresh/): give the backend a valid token") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError, AttributeError) as e:
            raise ImageFetchError(f"could not refresh the Label Studio access token: {_reason(e)}") from None
        if not isinstance(access, str) or not access:
            raise ImageFetchError("Label Studio's /api/token/refresh/ answered without an access token")
        with self._lock:
            if len(self._access) > 256:
                self._access.clear()
            self._access[key] = (access, _jwt_expiry(access))
        return f"Bearer {access}"


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    return str(reason)[:200] or type(e).__name__


def fetch(src: Source, ls_url: str | None, token: str | None, auth: LabelStudioAuth, max_bytes: int,
          deadline: float) -> bytes:
    """The bytes of ``src`` (blocking), at most ``max_bytes``, giving up at ``deadline`` (``time.monotonic()``)."""
    if src.data is not None:
        if len(src.data) > max_bytes:
            raise ImageTooLargeError(f"the task's data: image is over the limit of {max_bytes:,} bytes")
        return src.data
    assert src.url is not None
    renewed = False
    while True:
        timeout = max(0.1, min(30.0, deadline - time.monotonic()))
        headers = {"User-Agent": "fastsam-onnx", "Accept": "*/*"}  # not image/*: Label Studio answers that 406
        if src.with_token and token and ls_url:
            headers["Authorization"] = auth.header(ls_url, token, timeout, renew=renewed)
        try:
            with _OPENER.open(urllib.request.Request(src.url, headers=headers), timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise ImageTooLargeError(f"the image is {int(length):,} bytes, over the limit of {max_bytes:,} bytes (--max-upload-mb)")
                chunks, n = [], 0
                while True:
                    if time.monotonic() > deadline:
                        raise ImageFetchError("fetching the image did not finish within the request's deadline")
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        return b"".join(chunks)
                    n += len(chunk)
                    if n > max_bytes:
                        raise ImageTooLargeError(f"the image is over the limit of {max_bytes:,} bytes (--max-upload-mb)")
                    chunks.append(chunk)
        except urllib.error.HTTPError as e:
            if e.code == 401 and src.with_token and token and _is_jwt(token) and not renewed:
                renewed = True  # the cached access token may have expired early: refresh once
                continue
            hint = {401: ": check the token Label Studio gave at /setup or --label-studio-api-key",
                    403: ": the token may not see this project", 404: ""}.get(e.code, "")
            if 300 <= e.code < 400:
                hint = ": redirects are not followed"
            raise ImageFetchError(f"fetching the image failed with HTTP {e.code}{hint}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise ImageFetchError(f"the image host is unreachable: {_reason(e)}") from None
