"""Hostile requests in-process (issue 26): the deadline stops the slot's work, the caps are enforced before any
work, bodies are parsed without echoing them, nothing a client sends is a 500, loose types are refused as the
Python API refuses them, refused CORS preflights are JSON, and the OpenAPI spec is complete."""

from __future__ import annotations

import asyncio
import base64
import json
import threading

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.server import engine as engine_mod  # noqa: E402
from fastsam_onnx.server.app import create_app  # noqa: E402
from fastsam_onnx.server.engine import Engine, ServerConfig  # noqa: E402
from serverkit import EXAMPLE  # noqa: E402

IMG = EXAMPLE.read_bytes()
BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def model() -> FastSAM:
    m = FastSAM()
    m.clip  # noqa: B018
    return m


def make(model, **kw) -> tuple[TestClient, Engine]:
    cfg = ServerConfig(**kw)
    engine = Engine(cfg, model=model)
    return TestClient(create_app(cfg, engine), base_url=BASE, raise_server_exceptions=False), engine


@pytest.fixture()
def client(model):
    c, engine = make(model)
    c.engine = engine
    return c


def err(r, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text[:300]
    body = r.json()
    assert set(body) == {"error"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]["message"]


class GatedClip:
    """Wraps the real CLIP: the first ``encode_images`` call waits for :attr:`gate`; calls are counted."""

    def __init__(self, clip):
        self._clip = clip
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.image_calls = 0

    def __getattr__(self, name):
        return getattr(self._clip, name)

    def encode_images(self, images, batch_size=32):
        self.image_calls += 1
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        return self._clip.encode_images(images, batch_size)


def test_the_deadline_stops_the_slots_work(monkeypatch):
    """A text prompt whose CLIP crops take 5 batches, the first held until the client has its 504: the worker
    stops before the second batch (its slot frees) instead of running the rest for nobody."""
    model = FastSAM()
    gated = GatedClip(model.clip)
    model._clip = gated
    monkeypatch.setattr(engine_mod, "CLIP_BATCH", 2)
    cfg = ServerConfig(timeout=60)
    engine = Engine(cfg, model=model)
    app = create_app(cfg, engine)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as c:
            r = await c.post("/v1/segment", files={"image": ("e.jpg", IMG)}, data={"conf": "0.1"})
            assert r.status_code == 200, r.text
            image_id = r.json()["image_id"]
            crops = sum(1 for i in r.json()["instances"] if i["area"] > 100)
            assert crops > 2 * engine_mod.CLIP_BATCH  # more than one batch to do
            cfg.timeout = 0.5  # the prompt's deadline (the segment run above needed more)
            r = await c.post("/v1/prompt", json={"image_id": image_id, "texts": ["a dog"]})
            gated.gate.set()  # released only after the 504 is out
            for _ in range(3000):  # hang guard: 30 s
                if engine.load_info()["running"] == 0:
                    break
                await asyncio.sleep(0.01)
            return r

    r = asyncio.run(go())
    engine.close()
    err(r, 504, "deadline")
    assert gated.image_calls == 1, gated.image_calls  # stopped between batches
    assert engine.load_info()["running"] == 0 and engine.counts["deadline"] == 1


def test_caps_are_enforced_before_any_work(client):
    image_id = client.post("/v1/segment", files={"image": ("e.jpg", IMG)}).json()["image_id"]
    runs = dict(client.engine.counts)
    post = lambda **kw: client.post("/v1/prompt", json={"image_id": image_id, **kw})  # noqa: E731
    assert err(post(texts=["cat"] * 60000), 422, "invalid_request").startswith("texts")  # before: 504, slot held 24 s
    assert err(post(texts=["cat"] * 33), 422, "invalid_request").startswith("texts")
    assert err(post(texts=["x" * 201]), 422, "invalid_request").startswith("texts")
    assert err(post(boxes=[[0, 0, 10, 10]] * 101), 422, "invalid_request").startswith("boxes")
    assert err(post(points=[[1, 1]] * 101), 422, "invalid_request").startswith("points")
    err(post(texts=["cat"] * 300000), 413, "too_large")  # 2 MB of texts: over /v1/prompt's 1 MiB
    err(client.post("/v1/segment", json={"image": base64.b64encode(IMG).decode(), "texts": ["cat"] * 60000}), 422)
    marks = [{"type": "point", "data": [1, 1], "label": 1}] * 201
    err(client.post("/v1/predict", json={"image": base64.b64encode(IMG).decode(), "params": {"marks": marks}}), 422)
    assert client.engine.counts == runs  # nothing ran, nothing was even looked up


@pytest.mark.parametrize("body", [
    {"conf": True}, {"conf": "0.5"}, {"retina": "yes"}, {"retina": 1}, {"max_det": "300"}, {"max_det": 3.5},
    {"polygons": "false"}, {"boxes": [[0, 0, "10", 10]]}, {"labels": [True]}, {"texts": [1]},
    {"boxes": [[0, 0, 10 ** 300, 10]]}, {"points": [[-(10 ** 400), 1]]}, {"epsilon": float("nan")},
])
def test_loose_types_and_huge_numbers_are_422(client, body):
    payload = json.dumps({"image": base64.b64encode(IMG).decode(), **body}, allow_nan=True)
    msg = err(client.post("/v1/segment", content=payload, headers={"content-type": "application/json"}), 422, "invalid_request")
    assert msg.split(":")[0].split(".")[0] == next(iter(body)), msg


def test_multipart_fields_are_typed(client):
    def up(**fields):
        return client.post("/v1/segment", files={"image": ("e.jpg", IMG)}, data=fields)

    assert up(conf="0.5", retina="true", max_det="10", boxes="[[10, 20, 200, 240]]").status_code == 200
    for k, v in {"retina": "yes", "conf": "true", "max_det": "\"10\"", "points": "[[1e400, 1]]"}.items():
        assert err(up(**{k: v}), 422, "invalid_request").startswith(k)


def test_deep_nesting_and_big_integers_are_422_not_500(client):
    deep = "[" * 100000 + "]" * 100000
    b64 = base64.b64encode(IMG).decode()
    for path, body in (("/v1/segment", '{"image": "%s", "boxes": %s}' % (b64, deep)),
                       ("/v1/prompt", '{"image_id": "x", "boxes": %s}' % deep),
                       ("/v1/predict", '{"image": "%s", "params": {"marks": %s}}' % (b64, deep))):
        assert "nested" in err(client.post(path, content=body, headers={"content-type": "application/json"}), 422)
    assert "nested" in err(client.post("/v1/segment", files={"image": ("e.jpg", IMG)}, data={"boxes": "[" * 30000}), 422)
    big = 10 ** 300
    for mark in ({"type": "point", "data": [big, 1]}, {"type": "rectangle", "data": [0, 0, big, 1]}):
        err(client.post("/v1/predict", json={"image": b64, "params": {"marks": [mark]}}), 422, "invalid_request")


def test_a_422_names_the_field_without_echoing_the_body(model):
    c, _ = make(model, max_upload_bytes=32 << 20)
    bad_key = "k" * (4 << 20)
    r = c.post("/v1/prompt", content=json.dumps({"image_id": "x", "texts": ["a" * (900 << 10)]}),
               headers={"content-type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 1024, (r.status_code, len(r.content))
    body = json.dumps({"image": base64.b64encode(IMG).decode(), bad_key: 1})
    r = c.post("/v1/segment", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 1024, (r.status_code, len(r.content))
    assert r.json()["error"]["message"].startswith("kkkkk") and "..." in r.json()["error"]["message"]


def test_refused_cors_preflight_is_json(model):
    c, _ = make(model, cors_origins=["http://good.example"])
    r = c.options("/v1/segment", headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "cors_refused"
    r = c.options("/v1/segment", headers={"origin": "http://good.example", "access-control-request-method": "POST"})
    assert r.status_code == 200


def test_openapi_is_complete_and_self_hosted(client):
    spec = client.get("/openapi.json").json()
    text = json.dumps(spec)
    schemas = spec["components"]["schemas"]
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schemas, ref
    for path in ("/v1/segment", "/v1/prompt", "/v1/predict"):
        statuses = set(spec["paths"][path]["post"]["responses"])
        assert {"200", "400", "413", "415", "422", "429", "504"} <= statuses, (path, statuses)
    form = spec["paths"]["/v1/segment"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["retina"]["type"] == "boolean" and "string" not in json.dumps(form["boxes"])
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
