"""Request bodies → validated models, off the event loop and within stated caps, before any work.

* JSON bodies (``application/json``): at most ``max_bytes`` (413), parsed and validated in a worker thread (a
  large body never blocks ``/healthz``), nested at most :data:`MAX_JSON_DEPTH` deep (422; a 100,000-deep body
  is refused, never a ``RecursionError``), then the strict pydantic model (422: wrong types, out-of-range
  numbers, too many boxes/points/texts, over-long texts).
* multipart forms (``/v1/segment``): every field but ``texts``, ``point_mode`` and ``text_mode`` is JSON
  (``0.5``, ``true``, ``[[10, 20, 200, 240]]``), decoded and validated the same way; ``texts`` is one text, a
  JSON list, or repeated once per text.
* a 422 names the first bad field and why, never the request's own bytes (:func:`validation_message`).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BadImageError

__all__ = ["MAX_JSON_DEPTH", "PROMPT_BODY_BYTES", "read_json", "read_form", "validation_message", "TooDeep"]

MAX_JSON_DEPTH = 10
"""Deepest nesting of arrays and objects a JSON body or field may have (the API's own bodies need 5)."""
PROMPT_BODY_BYTES = 1 << 20
"""Largest body of ``/v1/prompt`` (no image in it), bytes."""
FORM_FIELD_BYTES = 64 << 10
"""Largest multipart field besides the image, bytes."""
RAW_FIELDS = ("texts", "point_mode", "text_mode")  # multipart fields that are plain strings (texts: unless "[...]")
M = TypeVar("M", bound=BaseModel)


class TooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH` (HTTP 422)."""


def _check_depth(value: Any, where: str) -> None:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise TooDeep(f"{where} is nested more than {MAX_JSON_DEPTH} deep")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def _loads(raw: bytes | str, where: str) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise TooDeep(f"{where} is nested more than {MAX_JSON_DEPTH} deep") from None
    _check_depth(value, where)
    return value


def _short(part: Any) -> str:
    text = str(part)
    return text if len(text) <= 40 else text[:37] + "..."


def validation_message(errors: list[dict[str, Any]]) -> str:
    """The first error as ``field.path: reason`` (union branch names left out, each part at most 40 characters)."""
    if not errors:
        return "invalid request"
    err = errors[0]
    loc = [_short(p) for p in err.get("loc", ()) if p != "body" and not (isinstance(p, str) and "[" in p)]
    msg = str(err.get("msg", "invalid"))[:200]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{'.'.join(loc) or 'body'}: {msg}{more}"


def _invalid(e: ValidationError) -> RequestValidationError:
    return RequestValidationError([{"loc": err.get("loc", ()), "msg": err.get("msg", "")} for err in e.errors()[:20]])


def _validate(model: type[M], value: Any) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise _invalid(e) from None


def _parse_json(raw: bytes, model: type[M]) -> M:
    try:
        value = _loads(raw, "the body")
    except TooDeep as e:
        raise RequestValidationError([{"loc": ("body",), "msg": str(e)}]) from None
    except ValueError:
        raise StarletteHTTPException(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestValidationError([{"loc": ("body",), "msg": "the body must be a JSON object"}])
    return _validate(model, value)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request, model: type[M], max_bytes: int) -> M:
    """The JSON body as ``model``: 415 when not JSON, 413 over ``max_bytes``, 400 not JSON, 422 invalid."""
    if content_type(request) != "application/json":
        raise StarletteHTTPException(415, "send application/json")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise StarletteHTTPException(413, f"the body is over the limit of {max_bytes:,} bytes for this route")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise StarletteHTTPException(413, f"the body is over the limit of {max_bytes:,} bytes for this route")
    return await anyio.to_thread.run_sync(_parse_json, bytes(raw), model)


def _form_fields(fields: list[tuple[str, str]], model: type[M]) -> M:
    out: dict[str, Any] = {}
    for key, value in fields:
        text = value.strip()
        if key == "texts" and key in out and not text.startswith("["):  # repeated parts: one text each
            out[key] = [*(out[key] if isinstance(out[key], list) else [out[key]]), value]
            continue
        if key in out:
            raise RequestValidationError([{"loc": (key,), "msg": "given more than once"}])
        if key in RAW_FIELDS and not (key == "texts" and text.startswith("[")):
            out[key] = value
            continue
        try:
            out[key] = _loads(text, f"field {_short(key)}")
        except TooDeep as e:
            raise RequestValidationError([{"loc": (key,), "msg": str(e)}]) from None
        except ValueError:
            raise RequestValidationError([{"loc": (key,), "msg": "must be JSON: a number, true/false, or a list "
                                           "such as [[10, 20, 200, 240]]"}]) from None
    return _validate(model, out)


async def read_form(request: Request, model: type[M]) -> tuple[bytes, M]:
    """(the ``image`` file's bytes, the other fields as ``model``) of a multipart upload."""
    form = await request.form(max_files=1, max_fields=32, max_part_size=FORM_FIELD_BYTES)
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise BadImageError("multipart upload without an 'image' file field")
    data = await upload.read()
    fields = [(k, v) for k, v in form.multi_items() if k != "image" and isinstance(v, str)]
    files = [k for k, v in form.multi_items() if k != "image" and not isinstance(v, str)]
    if files:
        raise RequestValidationError([{"loc": (files[0],), "msg": "must be a plain field, not a file"}])
    return data, await anyio.to_thread.run_sync(_form_fields, fields, model)
