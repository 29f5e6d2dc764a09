"""Every shell and Python example of the README and the documentation pages runs, on the shipped demo models.

The code blocks (```bash, ```sh, ```python) of README.md and of every page in mkdocs.yml's nav are executed in
document order, one test per page and kind, in a sandbox folder that holds what the examples name: ``models/``
(the repository's), ``photo.jpg`` (a real photograph), ``clip.mp4``, ``photos/``, and a model cache in which the zoo
names (``fastsam-s``, ``clip-vit-b-32`` ...) are the demo bundles, with ``FASTSAM_ONNX_OFFLINE=1`` (the download
path itself is tested in tests/test_fetch.py and tests/test_native_cli.py against a local HTTP server). Python
blocks of one page share one namespace, as a reader runs them one after the other.

A block may be preceded by ``<!-- example: KIND note -->``. KIND says how it runs here:

- (none) ``run``: as it is;
- ``serve``: each ``fastsam-onnx serve`` line is started with ``--port`` on a free port, must answer ``/readyz``,
  and is stopped; other lines run as they are;
- ``server`` / ``server-key``: against a real ``fastsam-onnx serve`` started for the page (``server-key``: with
  ``--api-key $KEY``), ``127.0.0.1:8000`` pointing at it and ``curl`` failing on HTTP errors;
- ``ray`` (slow): as it is, on a local Ray instance with a capped object store, shut down after;
- ``real-weights`` (slow): with the tests' own checkpoints named as the example names them (``FastSAM-s.pt``,
  ``FastSAM-x.pt``: test-made FastSAM-shaped weights; ``ViT-B-32.pt``: a test-made CLIP archive made like OpenAI's);
- ``cluster``, ``datasets``, ``device``, ``gpu``, ``app`` (another application: Label Studio ...), ``benchmark`` (a
  full benchmark run, minutes), ``ci``: not run here; the note must say which test covers the
  form that runs here, or the ``.ci/run`` step (reported as a skip with that note).

``pip install`` lines are not run (no network, and the environment under test must not change): the extras they
name must exist in pyproject.toml. ``python3 -m venv`` lines are not run either (tests/test_packaging.py installs the
built wheel into a fresh virtualenv).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

RUN_KINDS = ("run", "serve", "server", "server-key", "ray", "real-weights")
SKIP_KINDS = ("cluster", "datasets", "device", "gpu", "app", "benchmark", "ci")
LANGS = {"bash": "sh", "sh": "sh", "shell": "sh", "console": "sh", "python": "py", "py": "py"}
FENCE = re.compile(r"^(?:[ \t]*<!-- example: (?P<marker>[^\n]*?) -->\n)?(?P<indent>[ \t]*)```(?P<lang>[A-Za-z]*)[^\n]*\n"
                   r"(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    path: Path
    line: int
    lang: str  # "sh" or "py"
    kind: str
    note: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md and the pages of mkdocs.yml's nav (the generated reference holds no example)."""
    nav = re.findall(r":\s*([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    return [ROOT / "README.md"] + [ROOT / "docs" / n for n in nav if n != "cli-reference.md"]


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        lang = LANGS.get(m.group("lang").lower())
        if lang is None:
            continue
        marker = (m.group("marker") or "run").strip()
        kind, _, note = marker.partition(" ")
        code = textwrap.dedent(m.group("code")) if m.group("indent") else m.group("code")
        out.append(Block(path, text.count("\n", 0, m.start("code")) + 1, lang, kind, note.strip(" ()"), code))
    return out


ALL = [b for p in doc_pages() for b in blocks(p)]


def test_every_example_has_a_known_kind():
    bad = [f"{b.where}: {b.kind!r}" for b in ALL if b.kind not in RUN_KINDS + SKIP_KINDS]
    assert not bad, f"unknown example kinds (one of {RUN_KINDS + SKIP_KINDS}): {bad}"
    quiet = [b.where for b in ALL if b.kind in SKIP_KINDS and not re.search(r"tests/test_\w+\.py|\.ci/run", b.note)]
    assert not quiet, f"examples not run here must name the test (or the .ci/run step) that covers them: {quiet}"
    assert len([b for b in ALL if b.kind == "run"]) >= 20


# --------------------------------------------------------------------------------------------- the sandbox

def _video(path: Path, image: Path, frames: int = 6) -> None:
    import cv2

    img = cv2.imread(str(image))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (img.shape[1], img.shape[0]))
    for i in range(frames):
        writer.write(cv2.GaussianBlur(img, (3, 3), 0) if i % 2 else img)
    writer.release()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder with what the examples name, as the working directory; the environment they run in."""
    from fastsam_onnx.models import demo_bundle, demo_clip_bundle

    box = tmp_path / "sandbox"
    box.mkdir()
    (box / "models").symlink_to(ROOT / "models")
    bus = ROOT / "models" / "photos" / "bus.jpg"
    shutil.copy(bus, box / "photo.jpg")
    (box / "photos").mkdir()
    shutil.copy(bus, box / "photos" / "bus.jpg")
    shutil.copy(demo_bundle() / "example.jpg", box / "photos" / "example.jpg")
    _video(box / "clip.mp4", demo_bundle() / "example.jpg")
    cache = tmp_path / "cache"
    for name in ("fastsam-s", "fastsam-x"):
        shutil.copytree(demo_bundle(), cache / name)
    for name in ("clip-vit-b-32", "clip-vit-b-32-int8"):
        shutil.copytree(demo_clip_bundle(), cache / name)
    env = {
        "FASTSAM_ONNX_CACHE": str(cache),
        "FASTSAM_ONNX_OFFLINE": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": "0.02",  # ~0.5 GB of 24: the examples' Ray stays small
        "RAY_USAGE_STATS_ENABLED": "0",
        "YOLO_OFFLINE": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("FASTSAM_ONNX_MODEL", "FASTSAM_ONNX_CLIP", "FASTSAM_ONNX_PROVIDERS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(box)
    return box


# ------------------------------------------------------------------------------------------------ running

EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _logical_lines(code: str) -> list[str]:
    return re.sub(r"\\\n\s*", " ", code).splitlines()


#: commands an example may show but a test never runs: they change the machine or reach the network
NEVER_RUN = re.compile(r"^(sudo|apt|apt-get|dpkg|ray (start|stop)|nvidia-smi|trtexec|docker|systemctl|reboot)\b")


def _check_install(line: str, where: str) -> bool:
    """True for a line that is not run here: pip (install, uninstall: the environment under test must not change,
    and there is no network), venv creation. The fastsam-onnx extras a pip line names must exist."""
    s = line.strip()
    if re.match(r"^(python3? -m )?pip3?\b", s) or re.search(r"&&\s*(python3? -m )?pip3?\b", s):
        for group in re.findall(r"(?:fastsam-onnx|\.)\[([^\]]+)\]", s):
            unknown = {e.strip() for e in group.split(",")} - EXTRAS
            assert not unknown, f"{where}: `{s}` names extras that pyproject.toml does not have: {sorted(unknown)}"
        return True
    if re.match(r"^python3? -m venv\b", s):
        return True
    assert not NEVER_RUN.match(s), f"{where}: `{s}` must not run in a test: mark the block (<!-- example: KIND note -->)"
    return False


def _shell(code: str, where: str, env: dict | None = None, timeout: float = 600) -> None:
    lines = [(":" if _check_install(ln, where) else ln) for ln in _logical_lines(code)]
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, (f"{where}: the example failed (exit {p.returncode})\n--- code\n{code}\n--- stdout\n"
                               f"{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")


def _python(code: str, where: str, ns: dict) -> None:
    try:
        exec(compile(code, where, "exec"), ns)
    except Exception as e:  # noqa: BLE001 - reported with the block's place
        raise AssertionError(f"{where}: the example raised {type(e).__name__}: {e}\n--- code\n{code}") from e


def _serve_lines(code: str, where: str) -> None:
    """Each ``fastsam-onnx serve ...`` line started on a free port, checked ready, stopped; the rest run."""
    from serverkit import free_port, wait_ready

    for line in _logical_lines(code):
        if _check_install(line, where) or not line.strip():
            continue
        if not line.strip().startswith("fastsam-onnx serve"):
            _shell(line, where)
            continue
        port = free_port()
        cmd = line.split("#", 1)[0].strip()
        env = {**os.environ, "KEY": "docs-example-key", "LS_TOKEN": "docs-example-token"}  # what the examples name
        proc = subprocess.Popen(["bash", "-c", f"exec {cmd} --port {port}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def run_page(page: Path, kind: str, env: dict | None = None) -> int:
    """Run the blocks of ``kind`` on ``page`` in order; the number run."""
    ns: dict = {"__name__": "__docs_example__"}
    n = 0
    for b in blocks(page):
        if b.kind != kind:
            continue
        n += 1
        if b.lang == "py":
            _python(b.code, b.where, ns)
        elif kind == "serve":
            _serve_lines(b.code, b.where)
        else:
            code = b.code
            if kind.startswith("server"):
                code = code.replace("127.0.0.1:8000", f"127.0.0.1:{env['PORT']}")
                code = re.sub(r"\bcurl -s\b", "curl -sfS", code)
            _shell(code, b.where, env)
    return n


def _pages_with(kind: str) -> list:
    pages = sorted({b.path for b in ALL if b.kind == kind}, key=lambda p: doc_pages().index(p))
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in pages]


@pytest.mark.parametrize("page", _pages_with("run"))
def test_examples(page, sandbox):
    assert run_page(page, "run") > 0


@pytest.mark.parametrize("page", _pages_with("serve"))
def test_serve_examples(page, sandbox):
    pytest.importorskip("fastapi")
    assert run_page(page, "serve") > 0


@pytest.mark.parametrize("page", _pages_with("server") + _pages_with("server-key"))
def test_server_examples(page, sandbox):
    from serverkit import serve_process

    key = "docs-example-key"
    for kind, extra in (("server", ()), ("server-key", ("--api-key", key))):
        if not any(b.kind == kind for b in blocks(page)):
            continue
        with serve_process(*extra) as (_proc, url):
            run_page(page, kind, {"PORT": url.rsplit(":", 1)[1], "KEY": key})


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with("ray"))
def test_ray_examples(page, sandbox):
    pytest.importorskip("ray")
    import ray

    try:
        assert run_page(page, "ray") > 0
    finally:
        if ray.is_initialized():
            ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with("real-weights"))
def test_real_weight_examples(page, sandbox, request):
    """The conversion examples on the tests' own checkpoints, named as the examples name the official files."""
    names = {"FastSAM-s.pt": "s_checkpoint", "FastSAM-x.pt": "x_checkpoint", "ViT-B-32.pt": "clip_archive"}
    code = "\n".join(b.code for b in blocks(page) if b.kind == "real-weights")
    for name, fixture in names.items():
        if name in code:
            (sandbox / name).symlink_to(request.getfixturevalue(fixture))
    assert run_page(page, "real-weights") > 0


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where) for b in ALL if b.kind in SKIP_KINDS])
def test_examples_not_run_here(block):
    pytest.skip(f"{block.kind}: {block.note}")


from clip_fixtures import clip_archive, clip_cache, clip_checkpoint  # noqa: E402,F401  (fixtures, on demand)
