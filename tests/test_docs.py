"""The documentation: the site builds with ``mkdocs build --strict`` and loads nothing from the network, the README is a
short front page whose links resolve, generated pages and blocks are current, the Python API page documents every
public name, and facts stated in the docs agree with their one source (pyproject.toml, the parity bar of the tests,
the CLI's install recipes). The examples themselves run in tests/test_docs_examples.py."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT / "tools"))

MAX_README_LINES = 250  # issue 29: a front page
TEST_COMMAND = "python -m pytest -q -rs --durations=15"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def nav_pages() -> list[str]:
    return re.findall(r":\s*([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)


# --------------------------------------------------------------------------------------------- the site

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert p.returncode == 0, f"mkdocs build --strict failed:\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    assert "WARNING" not in p.stderr, p.stderr[-4000:]
    return out


def test_site_builds_strictly_with_every_page(site):
    pages = {p.name for p in DOCS.glob("*.md")}
    assert set(nav_pages()) == pages, f"docs pages not in mkdocs.yml's nav (or missing): {pages ^ set(nav_pages())}"
    for name in pages:
        assert (site / name.replace(".md", ".html")).is_file(), name


def test_site_works_offline(site):
    """No script, stylesheet, font or frame from another host: the site reads the same with no network."""
    remote = re.compile(r"""<(script|link|iframe|img|source)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""", re.I)
    css_remote = re.compile(r"""(@import\s+(url\()?["']?(https?:)?//|url\(\s*["']?(https?:)?//)""", re.I)
    found = []
    for f in site.rglob("*"):
        if f.suffix in (".html", ".css", ".js") and f.is_file():
            text = f.read_text(errors="replace")
            if f.suffix == ".html":
                found += [f"{f.name}: {m.group(0)[:120]}" for m in remote.finditer(text)]
            if f.suffix == ".css":
                found += [f"{f.name}: {m.group(0)[:120]}" for m in css_remote.finditer(text)]
            if "fonts.googleapis" in text or "fonts.gstatic" in text:
                found.append(f"{f.relative_to(site)}: Google Fonts")
    assert not found, found
    assert "font: false" in (ROOT / "mkdocs.yml").read_text()


def test_api_page_renders_the_docstrings(site):
    html = (site / "api.html").read_text()
    for name in ("fastsam_onnx.FastSAM", "fastsam_onnx.Result", "segment_dataset", "write_annotation", "CLIP"):
        assert name in html, name
    assert ":func:`" not in html and "``" not in html, "reST markup left in the API page"


# ------------------------------------------------------------------------------------------- the README

def test_readme_is_a_short_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for section in ("## Install", "## Quick start", "## Cheat sheet", "## What is proven"):
        assert section in text, section
    for task in ("--box", "--point", "--text", "--out-dir", "--format", "--edges", "--proposals", "serve",
                 "--engine ray", "bench", "bboxes=", "points=", "texts="):
        assert task in text, f"the cheat sheet lacks {task}"


def test_readme_links_resolve():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"https?://", target):
            assert (ROOT / target).exists(), f"README links to a missing {target}"
    anchors = re.findall(r"\]\((docs/[\w-]+\.md)#([\w-]+)\)", text)
    for page, anchor in anchors:
        heads = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), re.M)
        ids = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}
        assert anchor in ids, f"README links to {page}#{anchor}, which has no such heading"


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in README.read_text()
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()


# ------------------------------------------------------------------------------------ generated content

def test_cli_reference_is_current():
    """docs/cli-reference.md is what tools/cli_reference.py makes of the CLI's parsers now."""
    import cli_reference

    assert (DOCS / "cli-reference.md").read_text() == cli_reference.render(), \
        "docs/cli-reference.md is stale: run python tools/cli_reference.py"


def test_cli_reference_covers_every_option():
    from fastsam_onnx.cli import build_parser

    import cli_reference

    page = (DOCS / "cli-reference.md").read_text()
    for name, sub, _ in cli_reference._subparsers(build_parser()):
        assert f"## `fastsam-onnx {name}`" in page
        for action in sub._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help", "--debug"):
                    assert f"`{opt}`" in page, f"{name} {opt}"


def test_generated_blocks_are_current():
    """The benchmark figures, the installed size, the Ray figures, the extras table, the zoo table and the README's
    figures are what tools/update_readme.py makes of their sources now."""
    import update_readme

    for path, text in update_readme.render_blocks().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run python tools/update_readme.py"


def test_extras_table_matches_pyproject():
    extras = pyproject()["project"]["optional-dependencies"]
    table = (DOCS / "getting-started.md").read_text()
    rows = dict(re.findall(r"^\| `\[([\w-]+)\]` \| ([^|]*) \|", table, re.M))
    assert set(rows) == set(extras)
    for name, reqs in extras.items():
        for r in reqs:
            dist = re.split(r"[\s<>=!~;\[]", r.strip(), maxsplit=1)[0]
            if dist != "fastsam-onnx":
                assert dist in rows[name], f"[{name}]: {dist} is not in the table"


def test_prompt_pictures_show_the_page_prompts():
    """docs/img/prompt-*.jpg exist for every prompt of tools/docs_pictures.py, and the page uses the same values."""
    import docs_pictures

    page = (DOCS / "prompts.md").read_text()
    for stem, kwargs in docs_pictures.PROMPTS.items():
        assert (DOCS / "img" / f"{stem}.jpg").is_file() and f"img/{stem}.jpg" in page, stem
        for key, value in kwargs.items():
            shown = repr(value).replace("'", '"') if isinstance(value, (list, str)) else repr(value)
            assert shown in page, f"{stem}: {key}={shown} is not on the Prompts page"


# ------------------------------------------------------------------------------------ the Python API page

def _api_targets() -> list[str]:
    return re.findall(r"^::: ([\w.]+)", (DOCS / "api.md").read_text(), re.M)


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
                 and (inspect.isfunction(v) or inspect.isclass(v))]
    return list(names)


def _documented_constant(module, name: str) -> bool:
    """A module constant is documented by a ``#:`` comment above it (or above the group of one-line assignments it
    belongs to), a string right after it, or its name in the module's docstring."""
    if re.search(rf"`{re.escape(name)}`|:data:`[.~]*{re.escape(name)}`", module.__doc__ or ""):
        return True
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    if hasattr(module, "__path__"):  # a package re-exports names its modules define
        for f in sorted(Path(module.__file__).parent.glob("*.py")):
            if f.name != "__init__.py" and re.search(rf"^{re.escape(name)}\s*(:[^=]*)?=", f.read_text(), re.M):
                source = f.read_text()
                break
    lines = source.splitlines()
    one_line = re.compile(r"^[A-Z_][A-Z0-9_]*\s*(:[^=]*)?=")
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(name)}\s*(:[^=]*)?=", line):
            j = i - 1
            while j >= 0 and one_line.match(lines[j]):
                j -= 1
            if j >= 0 and lines[j].startswith("#:"):
                return True
    tree = ast.parse(source)
    for a, b in zip(tree.body, tree.body[1:]):
        if isinstance(a, (ast.Assign, ast.AnnAssign)) and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant):
            targets = a.targets if isinstance(a, ast.Assign) else [a.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def test_api_page_documents_every_public_name():
    """Every name of fastsam_onnx.__all__ has its own entry; every documented module's public names have docstrings
    (functions, classes) or a documenting comment (constants); every public subpackage has a section."""
    import fastsam_onnx

    targets = _api_targets()
    page = (DOCS / "api.md").read_text()
    for name in fastsam_onnx.__all__:
        assert f"fastsam_onnx.{name}" in targets or f"fastsam_onnx.{name}" in page, name
    for sub in ("fastsam_onnx.outputs", "fastsam_onnx.clip", "fastsam_onnx.distributed", "fastsam_onnx.server",
                "fastsam_onnx.models"):
        assert any(t == sub or t.startswith(sub + ".") for t in targets), f"{sub} has no section"
    undocumented = []
    for target in targets:
        try:
            module = importlib.import_module(target)
        except ImportError:
            obj = getattr(importlib.import_module(target.rsplit(".", 1)[0]), target.rsplit(".", 1)[1])
            if not inspect.getdoc(obj):
                undocumented.append(target)
            continue
        if not (module.__doc__ or "").strip():
            undocumented.append(target)
        for name in _public_names(module):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
                if not (obj.__doc__ or "").strip():
                    undocumented.append(f"{target}.{name}")
            elif not inspect.ismodule(obj) and not _documented_constant(module, name):
                undocumented.append(f"{target}.{name} (constant)")
    assert not undocumented, f"public names without documentation: {undocumented}"


# ------------------------------------------------------------------------------------- one source per fact

def _doc_texts() -> dict[str, str]:
    files = [README] + [DOCS / n for n in nav_pages()]
    return {str(f.relative_to(ROOT)): f.read_text() for f in files}


def test_versions_agree_with_pyproject():
    pp = pyproject()
    pins = {re.split(r"==", r)[0]: r.split("==")[1] for r in pp["project"]["optional-dependencies"]["export"] if "==" in r}
    oldest = re.search(r">=\s*([\d.]+)", pp["project"]["requires-python"]).group(1)
    ray_min = re.search(r">=\s*([\d.]+)", next(r for r in pp["project"]["optional-dependencies"]["ray"] if r.startswith("ray"))).group(1)
    for name, text in _doc_texts().items():
        for v in re.findall(r"ultralytics[ =]=?=?\s?(\d+\.\d+\.\d+)", text):
            assert v == pins["ultralytics"], f"{name}: ultralytics {v}, pyproject pins {pins['ultralytics']}"
        for v in re.findall(r"Python (\d+\.\d+) or newer", text):
            assert v == oldest, f"{name}: Python {v} or newer, pyproject says >={oldest}"
        for v in re.findall(r"Ray >= ?(\d+\.\d+)", text):
            assert v == ray_min, f"{name}: Ray >= {v}, pyproject says >={ray_min}"
    assert f"ultralytics {pins['ultralytics']}" in README.read_text()


def test_parity_sentence_matches_the_tests():
    """The README's parity bar is the one tests/parity.py asserts."""
    source = (ROOT / "tests" / "parity.py").read_text()
    box = re.search(r'f\["box_max_diff"\] <= ([\d.e-]+)', source).group(1)
    score = re.search(r'f\["score_max_diff"\] <= ([\d.e-]+)', source).group(1)
    mean = re.search(r'f\["mask_iou_mean"\] >= ([\d.]+)', source).group(1)
    low = re.search(r'f\["mask_iou_min"\] >= ([\d.]+)', source).group(1)
    text = " ".join(README.read_text().split())
    expect = (f"boxes within {float(box):g} px, scores within {score}, mask IoU ≥ {mean} on average and ≥ {low} "
              "for every instance")
    assert expect in text, expect


def test_install_recipes_agree():
    """README and Getting started give the same install, which the runtime's own messages name."""
    from fastsam_onnx import extras

    extras_now = set(pyproject()["project"]["optional-dependencies"])
    cpu = re.search(r"\[(\w+)\]", extras.CPU_INSTALL).group(1)
    gpu = re.search(r"\[(\w+)\]", extras.GPU_INSTALL).group(1)
    assert {cpu, gpu} <= extras_now
    for page in (README, DOCS / "getting-started.md"):
        text = page.read_text()
        block = text[text.index("<!-- install:start -->"):text.index("<!-- install:end -->")]
        assert f"pip install '.[{cpu}]'" in block and f"'.[{gpu}]'" in block, page.name
    base = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in pyproject()["project"]["dependencies"]]
    gs = (DOCS / "getting-started.md").read_text()
    listed = re.search(r"The base install holds[^:]*: ([^.]+)\.", " ".join(gs.split())).group(1)
    names = {n.strip().lower() for n in re.split(r",| and ", listed) if n.strip()}
    assert names == {b.lower() for b in base}, f"Getting started lists {sorted(names)}, pyproject {sorted(base)}"


def test_checkpoint_sizes_match_the_zoo():
    """Sizes quoted for the zoo's checkpoints are the registry's."""
    from fastsam_onnx.models.registry import REGISTRY

    sizes = {"FastSAM-s": REGISTRY["fastsam-s"].source.approx_mb, "FastSAM-x": REGISTRY["fastsam-x"].source.approx_mb}
    seen = 0
    for name, text in _doc_texts().items():
        for model, mb in re.findall(r"(FastSAM-[sx])(?:\.pt| checkpoint)? \(([\d.]+) MB", text):
            assert float(mb) == sizes[model], f"{name}: {model} {mb} MB, the zoo says {sizes[model]}"
            seen += 1
    assert seen >= 2


def test_troubleshooting_quotes_the_real_messages():
    """The messages the Troubleshooting page quotes are the ones the code prints."""
    from fastsam_onnx.cli.models import DEMO_NOTICE
    from fastsam_onnx.extras import MissingRuntimeError

    page = " ".join((DOCS / "troubleshooting.md").read_text().split())
    runtime = MissingRuntimeError(what="x").msg  # "x needs ONNX Runtime, ...": the page quotes it from "needs"
    assert runtime[len("x "):] in page, runtime
    assert DEMO_NOTICE.split(" (")[0] in page
