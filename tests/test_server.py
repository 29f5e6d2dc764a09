"""The HTTP API in-process (FastAPI's TestClient / httpx's ASGI transport): every endpoint, every error code,
the result cache (hits, evictions, byte bound), the shared CLIP crop embeddings, identical concurrent requests,
the concurrency/queue bound (429), the deadline (504), and the guards (Host, API key, CORS, streaming 413)."""

from __future__ import annotations

import asyncio
import base64
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.server.app import create_app  # noqa: E402
from fastsam_onnx.server.cache import ResultCache, result_nbytes  # noqa: E402
from fastsam_onnx.server import engine as engine_mod  # noqa: E402
from fastsam_onnx.server.engine import Engine, ServerConfig  # noqa: E402
from serverkit import EXAMPLE, SlowModel  # noqa: E402

IMG = EXAMPLE.read_bytes()
BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def model() -> FastSAM:
    m = FastSAM()
    m.clip  # noqa: B018
    return m


@pytest.fixture(scope="module")
def everything(model):
    return model.segment(str(EXAMPLE))


def make(model, **kw) -> tuple[TestClient, Engine]:
    cfg = ServerConfig(**kw)
    engine = Engine(cfg, model=model)
    return TestClient(create_app(cfg, engine), base_url=BASE, raise_server_exceptions=False), engine


@pytest.fixture()
def client(model):
    c, engine = make(model)
    c.engine = engine
    return c


def upload(c, data=IMG, **fields):
    return c.post("/v1/segment", files={"image": ("example.jpg", data, "image/jpeg")}, data={k: str(v) for k, v in fields.items()})


def assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body
    assert "Traceback" not in r.text
    return body["error"]


def inside_point(result, i: int) -> list[int]:
    ys, xs = np.nonzero(result.mask(i))
    k = len(ys) // 2
    return [int(xs[k]), int(ys[k])]


def strip(inst: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != "polygons"} for d in inst]


# -- endpoints -----------------------------------------------------------------------------------------------
def test_health_ready_info(client, model):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    info = client.get("/v1/info").json()
    assert info["model"]["providers"] == model.providers and info["model"]["imgsz"] == [512, 512]
    assert info["clip"]["bundle"] == "clip-demo" and info["versions"]["fastsam-onnx"]
    assert info["limits"]["max_upload_bytes"] == 32 << 20 and info["cache"]["max_bytes"] == 256 << 20


def test_readyz_is_503_until_the_models_are_loaded():
    cfg = ServerConfig()
    c = TestClient(create_app(cfg, Engine(cfg)), base_url=BASE)  # no lifespan: nothing loads
    assert_error(c.get("/readyz"), 503, "not_ready")
    r = upload(c)
    assert_error(r, 503, "not_ready")
    assert r.headers["retry-after"] == "1"
    assert c.get("/healthz").status_code == 200


def test_segment_returns_the_cli_json(client, everything):
    expected = everything.to_json()["instances"]
    r = upload(client)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["instances"] == expected and len(expected) > 3
    assert d["image"]["width"] == 512 and len(d["image_id"]) == 32 and d["cached"] is False
    assert {"preprocess", "inference", "postprocess", "server_total"} <= set(d["timings_ms"])
    j = client.post("/v1/segment", json={"image": "data:image/jpeg;base64," + base64.b64encode(IMG).decode(),
                                         "polygons": True, "epsilon": 0.01, "overlay": True}).json()
    assert j["image_id"] == d["image_id"] and j["cached"] is True  # same bytes and settings: one cache entry
    assert strip(j["instances"]) == expected
    assert all(p["exterior"] and len(p["exterior"][0]) == 2 for inst in j["instances"] for p in inst["polygons"])
    png = base64.b64decode(j["overlay_png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_segment_settings_and_prompts_match_the_runtime(client, model):
    ref = model.segment(str(EXAMPLE), conf=0.25, iou=0.7, max_det=5)
    d = upload(client, conf=0.25, iou=0.7, max_det=5, retina="true").json()
    assert d["instances"] == ref.to_json()["instances"] and len(d["instances"]) == 5
    box = [float(v) for v in ref.boxes[1]]
    d = upload(client, conf=0.25, iou=0.7, max_det=5, boxes=f"[{box}]").json()
    assert d["instances"] == model.prompt(ref, bboxes=[box]).to_json()["instances"]


def test_prompt_box_point_text_match_the_runtime(client, model, everything):
    image_id = upload(client).json()["image_id"]
    p = inside_point(everything, 0)
    box = everything.boxes[2].tolist()
    cases = [
        ({"points": [p]}, {"points": [p]}),
        ({"points": [p, inside_point(everything, 1)], "labels": [1, 0]}, {"points": [p, inside_point(everything, 1)], "labels": [1, 0]}),
        ({"boxes": [box]}, {"bboxes": [box]}),
        ({"boxes": box, "texts": "a blue rectangle"}, {"bboxes": box, "texts": "a blue rectangle"}),
        ({"points": [p], "point_mode": "merge"}, {"points": [p], "point_mode": "merge"}),
        ({"texts": ["a yellow pentagon"], "text_mode": "original"}, {"texts": ["a yellow pentagon"], "text_mode": "original"}),
    ]
    for body, kwargs in cases:
        r = client.post("/v1/prompt", json={"image_id": image_id, **body})
        assert r.status_code == 200, (body, r.text)
        assert r.json()["instances"] == model.prompt(everything, **kwargs).to_json()["instances"], body
        assert len(r.json()["instances"]) >= 1
    assert client.engine.counts["segment_runs"] == 1


def test_second_text_prompt_costs_only_the_text_tower(model):
    c, engine = make(model)
    image_id = upload(c).json()["image_id"]
    before = engine.cache.nbytes
    clip = model.clip
    calls = []
    original = clip.encode_images
    clip.encode_images = lambda images, *a, **k: calls.append(len(images)) or original(images, *a, **k)
    try:
        assert c.post("/v1/prompt", json={"image_id": image_id, "texts": ["a blue rectangle"]}).status_code == 200
        assert c.post("/v1/prompt", json={"image_id": image_id, "texts": ["a red circle"]}).status_code == 200
    finally:
        del clip.encode_images
    # the crops were encoded once, for the first text (in the server's deadline-checked batches of CLIP_BATCH)
    assert calls and all(n > 0 for n in calls)
    assert len(calls) == -(-sum(calls) // engine_mod.CLIP_BATCH)  # one pass over the crops, none for the second text
    assert engine.cache.nbytes > before  # the cached embeddings count against the bound


# -- the cache -----------------------------------------------------------------------------------------------
def test_cache_hits_evictions_and_byte_bound(model, everything):
    one = result_nbytes(everything)
    c, engine = make(model, cache_bytes=int(one * 1.5))  # room for one result
    a = upload(c).json()["image_id"]
    assert upload(c).json()["cached"] is True and engine.counts["segment_runs"] == 1 and engine.counts["cache_hits"] == 1
    other = upload(c, conf=0.3).json()["image_id"]  # other settings: another entry, evicts the first
    assert other != a and engine.cache.stats()["evictions"] == 1 and engine.cache.nbytes <= engine.cache.max_bytes
    err = assert_error(c.post("/v1/prompt", json={"image_id": a, "points": [[1, 1]]}), 404, "unknown_image")
    assert "send the image again" in err["message"]
    assert c.post("/v1/prompt", json={"image_id": other, "points": [[1, 1]]}).status_code == 200


def test_result_cache_unit(everything):
    n = result_nbytes(everything)
    assert n >= everything.orig_img.nbytes + sum(cr.mask.nbytes for cr in everything.crops)
    cache = ResultCache(int(2.5 * n))
    for k in "abc":
        assert cache.put(k, everything)
    assert len(cache) == 2 and "a" not in cache and cache.nbytes <= cache.max_bytes
    cache.get("b")
    cache.put("d", everything)
    assert "b" in cache and "c" not in cache  # least recently used goes first
    assert not ResultCache(n - 1).put("x", everything)  # larger than the whole bound: not kept


def test_identical_concurrent_requests_share_one_run(model):
    slow = SlowModel(model)
    cfg = ServerConfig(concurrency=2, queue=8)
    engine = Engine(cfg, model=slow)
    app = create_app(cfg, engine)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            tasks = [asyncio.create_task(c.post("/v1/segment", files={"image": ("e.jpg", IMG)})) for _ in range(4)]
            # the gate stays shut until the three others have joined the run in flight (a hang guard only bounds
            # the wait): none of them can be a late request answered from the result cache
            for _ in range(3000):
                if slow.entered.is_set() and engine.counts["shared_runs"] == 3:
                    break
                await asyncio.sleep(0.01)
            joined = dict(engine.counts)
            slow.gate.set()
            return joined, await asyncio.gather(*tasks)

    joined, rs = asyncio.run(go())
    engine.close()
    assert joined["shared_runs"] == 3 and joined["cache_hits"] == 0 and joined["segment_runs"] == 0, joined
    assert [r.status_code for r in rs] == [200] * 4
    assert len({r.json()["image_id"] for r in rs}) == 1
    assert engine.counts["segment_runs"] == 1 and engine.counts["shared_runs"] == 3 and engine.counts["cache_hits"] == 0
    assert sorted(r.json()["cached"] for r in rs) == [False, True, True, True]


# -- errors ----------------------------------------------------------------------------------------------------
def test_bad_input_codes(client):
    assert_error(upload(client, data=b"not an image at all"), 400, "bad_image")
    assert_error(client.post("/v1/segment", json={"image": "%%%not base64"}), 400, "bad_image")
    assert_error(client.post("/v1/segment", content=b"{", headers={"content-type": "application/json"}), 400, "bad_request")
    assert_error(client.post("/v1/segment", content=b"x", headers={"content-type": "text/plain"}), 415, "http_415")
    assert_error(client.post("/v1/segment", files={"other": ("a", b"x")}), 400, "bad_image")
    msg = assert_error(upload(client, conf=2), 422, "invalid_request")["message"]
    assert msg.startswith("conf: ") and "1" in msg  # the schema's range, named by field
    assert_error(upload(client, imgsz=640), 422, "bad_argument")  # static demo model: the runtime's own check
    assert_error(upload(client, boxes="[[1, 2, 3]]"), 422, "invalid_request")
    assert_error(upload(client, boxes="oops"), 422, "invalid_request")
    assert_error(upload(client, max_det="many"), 422, "invalid_request")
    assert_error(upload(client, unknown_field=1), 422, "invalid_request")
    image_id = upload(client).json()["image_id"]
    assert_error(client.post("/v1/prompt", json={"image_id": image_id, "points": [[1, 2]], "labels": [3]}), 422, "invalid_request")
    assert_error(client.post("/v1/prompt", json={"image_id": image_id, "points": [[1, 2]], "point_mode": "nope"}), 422, "invalid_request")
    assert_error(client.post("/v1/prompt", json={"image_id": image_id, "texts": [""]}), 422, "invalid_request")
    assert_error(client.post("/v1/prompt", json={"image_id": image_id, "points": [[1, 2], [3, 4]], "labels": [1]}), 422, "bad_prompt")
    assert_error(client.post("/v1/prompt", json={"points": [[1, 2]]}), 422, "invalid_request")
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/v1/segment"), 405, "method_not_allowed")


def test_pixel_limit_is_413_from_the_header(model, monkeypatch):
    from test_image_bombs import jpeg_bomb, png_bomb

    c, engine = make(model, max_pixels=100 * 100)
    assert_error(upload(c), 413, "too_large")  # 512 x 512 > 10 000 px
    c2, _ = make(model)
    import cv2

    def boom(*a, **k):
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(cv2, "imdecode", boom)  # headers claiming 65000 x 65000: refused before any decode
    for bomb in (png_bomb(65000, 65000), jpeg_bomb()):
        assert "over the limit" in assert_error(upload(c2, data=bomb), 413, "too_large")["message"]
    monkeypatch.undo()
    assert_error(upload(c2, data=png_bomb(60, 60)[:-20]), 400, "bad_image")  # small but truncated: undecodable


def test_internal_errors_are_json_without_traceback(model):
    cfg = ServerConfig()
    c = TestClient(create_app(cfg, Engine(cfg, model=SlowModel(model, fail=True))), base_url=BASE, raise_server_exceptions=False)
    err = assert_error(upload(c), 500, "internal")
    assert "/secret/path" not in err["message"]


def test_busy_is_429_with_retry_after_and_deadline_is_504(model):
    slow = SlowModel(model)
    cfg = ServerConfig(concurrency=1, queue=1, timeout=30)
    engine = Engine(cfg, model=slow)
    app = create_app(cfg, engine)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            first = asyncio.create_task(c.post("/v1/segment", files={"image": ("e.jpg", IMG)}))
            while not slow.entered.is_set():
                await asyncio.sleep(0.01)
            second = asyncio.create_task(c.post("/v1/segment", files={"image": ("e.jpg", IMG)}, data={"conf": "0.3"}))
            while engine.load_info()["waiting"] < 1:
                await asyncio.sleep(0.01)
            third = await c.post("/v1/segment", files={"image": ("e.jpg", IMG)}, data={"conf": "0.2"})
            slow.gate.set()
            return third, await first, await second

    third, first, second = asyncio.run(go())
    assert first.status_code == 200 and second.status_code == 200
    assert_error(third, 429, "busy")
    assert third.headers["retry-after"] == "1"
    engine.close()

    slow2 = SlowModel(model)
    cfg2 = ServerConfig(timeout=0.3)
    engine2 = Engine(cfg2, model=slow2)
    c = TestClient(create_app(cfg2, engine2), base_url=BASE)
    assert_error(upload(c), 504, "deadline")
    assert engine2.counts["deadline"] == 1 and engine2.counts["segment_runs"] == 0  # answered while the run is held
    slow2.gate.set()
    engine2.close()


# -- guards --------------------------------------------------------------------------------------------------
def test_api_key(model):
    c, _ = make(model, api_key="s3cret")
    assert_error(c.get("/v1/info"), 401, "unauthorized")
    assert_error(c.get("/v1/info", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    for h in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}, {"Token": "s3cret"}):
        assert c.get("/v1/info", headers=h).status_code == 200, h
    assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200  # the page asks for the key


def test_host_header_check(model):
    c, _ = make(model)
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "127.0.0.1"):
        assert c.get("/healthz", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "127.0.0.1.evil.example", "attacker:8000"):
        assert_error(c.get("/healthz", headers={"host": host}), 400, "bad_host")
    c2, _ = make(model, allowed_hosts=["seg.lan"])
    assert c2.get("/healthz", headers={"host": "seg.lan:8000"}).status_code == 200


def test_cors_closed_unless_origins_given(model):
    c, _ = make(model)
    r = c.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    c2, _ = make(model, cors_origins=["https://app.example"])
    assert c2.get("/healthz", headers={"Origin": "https://app.example"}).headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in c2.get("/healthz", headers={"Origin": "https://evil.example"}).headers
    pre = c2.options("/v1/segment", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200 and "POST" in pre.headers["access-control-allow-methods"]


def test_body_limit_413_from_content_length_and_while_streaming(model):
    cfg = ServerConfig(max_upload_bytes=1 << 20)
    app = create_app(cfg, Engine(cfg, model=model))
    c = TestClient(app, base_url=BASE)
    assert_error(upload(c, data=b"\0" * (2 << 20)), 413, "too_large")
    pulled = []

    async def body():  # a chunked upload (no Content-Length) of up to 64 MiB
        for i in range(64):
            pulled.append(i)
            yield b"\0" * (1 << 20)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as ac:
            return await ac.post("/v1/segment", content=body(), headers={"content-type": "application/json"})

    r = asyncio.run(go())
    assert_error(r, 413, "too_large")
    assert len(pulled) <= 3, f"{len(pulled)} MiB read before the 413"


def test_page_is_served_self_contained(client):
    html = client.get("/").text
    js = client.get("/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "/app.js" in html and "http://" not in html and "https://" not in html  # no CDN
    assert "http://" not in js.text and "https://" not in js.text and "/v1/prompt" in js.text
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/segment", "/v1/prompt", "/v1/info", "/healthz", "/readyz", "/v1/models", "/v1/predict"} <= set(spec["paths"])
    body = spec["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


def test_threads_share_one_model_object(model):
    c, engine = make(model, concurrency=2)
    out = []

    def worker(conf):
        out.append(upload(c, conf=conf).status_code)

    ts = [threading.Thread(target=worker, args=(v,)) for v in (0.3, 0.35, 0.45, 0.5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert out == [200] * 4 and engine.model is model
