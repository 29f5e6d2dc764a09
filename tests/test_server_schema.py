"""Schemathesis against the server's own OpenAPI spec (in-process, bounded examples) with every check it has
(no 5xx, status codes, content types, headers and response bodies as documented, schema-violating requests
refused, schema-valid ones accepted); every error is the JSON ``{"error": {"code", "message"}}``.

The JSON bodies of ``/v1/segment``, ``/v1/predict`` and ``/v1/prompt`` get a real image (and a real
``image_id``), so generated prompts reach the runtime. A schema-valid request may still be refused 422 with the
runtime's own ``bad_prompt``/``bad_argument`` code: rules across fields (one label per point, text_mode
'all' needs text_threshold, a static model takes no imgsz) that JSON Schema does not state."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import CHECKS  # noqa: E402

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.server.app import create_app  # noqa: E402
from fastsam_onnx.server.engine import Engine, ServerConfig  # noqa: E402
from serverkit import EXAMPLE  # noqa: E402

B64 = base64.b64encode(EXAMPLE.read_bytes()).decode()
OURS = ("/v1/", "/healthz", "/readyz")  # other routers (Label Studio) are tested by their own suites


def _real(case, image_id: str):
    """The case with a real image / image_id where its body has one (left alone when the body is not an object)."""
    body = case.body
    if isinstance(body, dict):
        if case.path == "/v1/prompt" and "image_id" in body:
            body["image_id"] = image_id
        elif "image" in body and case.media_type == "application/json":
            body["image"] = B64
        elif "image" in body:
            body["image"] = EXAMPLE.read_bytes()
    return case


def test_all_checks_pass():
    cfg = ServerConfig(allowed_hosts=["testserver", "localhost"], max_upload_bytes=1 << 20, timeout=30)
    model = FastSAM()
    app = create_app(cfg, Engine(cfg, model=model))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    from fastapi.testclient import TestClient

    image_id = TestClient(app).post("/v1/segment", json={"image": B64}).json()["image_id"]  # no lifespan: pool stays
    checks = [c for c in CHECKS.get_all() if c.__name__ != "positive_data_acceptance"]
    assert len(checks) >= 8, [c.__name__ for c in checks]
    seen = []
    for item in schema.get_all_operations():
        operation = item.ok()
        if not operation.path.startswith(OURS):
            continue
        seen.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case = _real(case, image_id)
            response = case.call_and_validate(checks=checks)
            assert response.status_code < 500, (case.path, response.text[:500])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
            if case.meta is not None and case.meta.generation.mode.name.lower() == "positive":
                # schema-valid: accepted, or refused only by the runtime's cross-field rules (module docstring)
                ok = response.status_code < 300 or (response.status_code == 422 and response.json()["error"]["code"]
                                                    in ("bad_prompt", "bad_argument"))
                assert ok, (case.path, case.body if not isinstance(case.body, dict) else
                            {k: v for k, v in case.body.items() if k != "image"}, response.text[:300])

        check()
    assert {"POST /v1/segment", "POST /v1/prompt", "POST /v1/predict", "GET /v1/info"} <= set(seen)
