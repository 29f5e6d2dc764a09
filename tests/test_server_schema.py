"""Schemathesis against the server's own OpenAPI spec (in-process, bounded examples): no 5xx, and every error
is the JSON ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.server.app import create_app  # noqa: E402
from fastsam_onnx.server.engine import Engine, ServerConfig  # noqa: E402


def test_no_server_errors():
    cfg = ServerConfig(allowed_hosts=["testserver", "localhost"], max_upload_bytes=1 << 20, timeout=30)
    app = create_app(cfg, Engine(cfg, model=FastSAM()))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen = []
    for item in schema.get_all_operations():
        operation = item.ok()
        seen.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, response.text[:500])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body

        check()
    assert {"POST /v1/segment", "POST /v1/prompt", "POST /v1/predict", "GET /v1/info"} <= set(seen)
