"""A real Label Studio server for the tests (and tools/labelstudio_latency.py): started from the virtualenv of
``$FASTSAM_LS_PYTHON`` (``.ci/run`` makes it) on 127.0.0.1, offline, in its own process group, stopped by PID;
and the few REST calls of its API the tests make (projects, uploads, ML backends, actions, predictions)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

from serverkit import free_port

LEGACY_TOKEN = "f4a5e1c0b2d3" * 3 + "0123"  # 40 characters, as Label Studio's own tokens
USER, PASSWORD = "fastsam@example.com", "fastsam-test-1"  # the user label_studio() creates
#: what Label Studio needs to call a backend on 127.0.0.1 and to make no outside connection
OFFLINE_ENV = {"ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
               "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false"}

BRUSH_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="Object" background="#FF8800"/></BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Object" smart="true" background="#00AAFF"/></KeyPointLabels>
  <RectangleLabels name="rect" toName="image" smart="true"><Label value="Object" background="#00AAFF"/></RectangleLabels>
</View>"""
POLYGON_CONFIG = """<View>
  <Image name="img" value="$photo"/>
  <PolygonLabels name="poly" toName="img"><Label value="Shape" background="#22CC44"/></PolygonLabels>
</View>"""


def ls_python() -> str | None:
    """``$FASTSAM_LS_PYTHON``: the Python of a virtualenv with ``label-studio`` (None when unset)."""
    return os.environ.get("FASTSAM_LS_PYTHON") or None


@contextmanager
def label_studio(python: str, data_dir: Path, port: int | None = None, timeout: float = 240) -> Iterator["LabelStudio"]:
    """``label-studio start`` on 127.0.0.1 with a user whose legacy token is :data:`LEGACY_TOKEN`; yields a client."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(python).with_name("label-studio")), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--username", USER, "--password", PASSWORD,
           "--user-token", LEGACY_TOKEN, "--enable-legacy-api-token", "--log-level", "WARNING"]
    env = {**os.environ, **OFFLINE_ENV, "HOME": str(data_dir), "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir)}
    log = open(data_dir / "label-studio.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"label-studio exited with {proc.returncode}: {(data_dir / 'label-studio.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"label-studio did not answer /health within {timeout} s")
            time.sleep(0.5)
        ls = LabelStudio(url, LEGACY_TOKEN)
        ls.start_seconds = time.monotonic() - t0
        yield ls
    finally:
        stop_group(proc)
        log.close()


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM to the process group led by ``proc`` (its PID), SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
    try:  # children left in the group (an autoreloader) go with it
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LabelStudio:
    """The REST calls the tests make, as a user with token ``token`` (``Token`` scheme)."""

    start_seconds: float = 0.0

    def __init__(self, url: str, token: str):
        self.url = url
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=180)

    def _ok(self, r: httpx.Response) -> Any:
        assert r.status_code < 300, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:2000]}"
        return r.json() if r.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self._ok(self.http.get(path, params=params))

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self._ok(self.http.post(path, json=body, **kwargs))

    def personal_access_token(self) -> str:
        """A new personal access token (a JWT refresh token) of the user."""
        return self.post("/api/token/")["token"]

    def project(self, title: str, config: str) -> int:
        return self.post("/api/projects", {"title": title, "label_config": config})["id"]

    def upload(self, project: int, files: list[Path]) -> list[dict[str, Any]]:
        """Import image files by upload; the project's tasks, in id order."""
        for f in files:
            with open(f, "rb") as fh:
                self._ok(self.http.post(f"/api/projects/{project}/import", files={"file": (f.name, fh.read())}))
        return sorted(self.get("/api/tasks", project=project, page_size=100)["tasks"], key=lambda t: t["id"])

    def connect(self, project: int, backend_url: str, key: str | None = None, extra: dict | None = None) -> int:
        """Register ``backend_url`` as the project's interactive ML backend (HTTP Basic auth with ``key``)."""
        body: dict[str, Any] = {"url": backend_url, "project": project, "title": "FastSAM", "is_interactive": True}
        if key:
            body.update(auth_method="BASIC_AUTH", basic_auth_user="labelstudio", basic_auth_pass=key)
        if extra is not None:
            body["extra_params"] = extra
        return self.post("/api/ml", body)["id"]

    def retrieve_predictions(self, project: int) -> Any:
        return self.post("/api/dm/actions", {"selectedItems": {"all": True, "excluded": []}},
                         params={"id": "retrieve_tasks_predictions", "project": project})

    def predictions(self, task: int) -> list[dict[str, Any]]:
        return self.get("/api/predictions", task=task)

    def interactive(self, ml_backend: int, task: int, context: list[dict[str, Any]]) -> dict[str, Any]:
        """Label Studio's interactive-annotating call (what the editor's smart tools send)."""
        return self.post(f"/api/ml/{ml_backend}/interactive-annotating", {"task": task, "context": {"result": context}})


def keypoint(x: float, y: float, w: int, h: int, positive: bool = True) -> dict[str, Any]:
    """A smart keypoint region as the editor sends it: pixel (x, y) of a w × h image, in percent."""
    return {"type": "keypointlabels", "from_name": "kp", "to_name": "image", "is_positive": positive,
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x * 100 / w, "y": y * 100 / h, "width": 0.5, "keypointlabels": ["Object"]}}


def rectangle(box: list[float], w: int, h: int) -> dict[str, Any]:
    """A smart rectangle region for the pixel box xyxy of a w × h image, in percent."""
    x1, y1, x2, y2 = box
    return {"type": "rectanglelabels", "from_name": "rect", "to_name": "image", "original_width": w, "original_height": h,
            "image_rotation": 0, "value": {"x": x1 * 100 / w, "y": y1 * 100 / h, "width": (x2 - x1) * 100 / w,
                                           "height": (y2 - y1) * 100 / h, "rotation": 0, "rectanglelabels": ["Object"]}}


def decode_with_sdk(python: str, regions: list[dict[str, Any]], workdir: Path) -> list[Any]:
    """The brush regions' masks decoded by ``label_studio_sdk``'s own decoder (tests/ls_driver.py, run in the
    Label Studio virtualenv): a list of (H, W) bool arrays."""
    import numpy as np

    src, out = workdir / "regions.json", workdir / "masks.npz"
    src.write_text(json.dumps([{"rle": r["value"]["rle"], "height": r["original_height"], "width": r["original_width"]}
                               for r in regions]))
    driver = Path(__file__).with_name("ls_driver.py")
    p = subprocess.run([python, str(driver), str(src), str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    with np.load(out) as z:
        return [z[f"m{i}"] for i in range(len(regions))]
