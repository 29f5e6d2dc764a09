"""The package's shape (issue 23): layers point one way, and modules stay short.

The import graph is built from the source with :mod:`ast` (nothing is imported): every ``.py`` file under
``runtime/``, ``export/``, ``models/`` and ``benchmarks/`` becomes its ``fastsam_onnx...`` module; its
module-level and function-level imports become edges (relative imports resolved); imports inside an
``if TYPE_CHECKING:`` block are left out, and so are imports of anything outside the package (optional
dependencies included). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module of the package,
else to ``pkg``. No implicit edge runs from a submodule to its parents' ``__init__``.

The rules enforced:

* no cycle: no strongly connected component of more than one module, and no module importing itself;
* the CLI, the server and Ray (``fastsam_onnx.distributed``) use the runtime and never each other, except
  that the CLI starts the other two (``fastsam-onnx serve``, ``segment --engine ray``): ``cli`` may import
  ``server`` and ``distributed``; ``server`` and ``distributed`` import neither ``cli`` nor each other;
* the runtime core (the flat modules of ``fastsam_onnx``, ``fastsam_onnx.outputs``, ``fastsam_onnx.clip``)
  imports none of ``cli``, ``server``, ``distributed``, ``benchmarks``, ``export``, with one deliberate exception
  (issue 24): ``fastsam_onnx.zoo`` may import ``fastsam_onnx.export.native_bundle``, the torch-free converter,
  because ``FastSAM("fastsam-s")`` fetches and converts a zoo model on first use, as rembg and fastembed do,
  and the zoo is where a name becomes a bundle. Only that module, only from the zoo (function-level, run only
  for a zoo name not in the cache); the no-cycle rule still holds, so the converter's bundle writer must never
  reach back into the runtime model (``fastsam_onnx.model``; the fp16/int8 accuracy checks that run FastSAM
  live in ``export.native`` and ``export.precision``, which the zoo does not import);
* ``fastsam_onnx.manifest`` validates manifests only: it imports neither ``fastsam_onnx.download`` nor
  ``fastsam_onnx.models`` (zoo names and cache paths are resolved by ``fastsam_onnx.zoo``);
* every module of the package, of ``tests/`` and of the repository's ``tools/`` is at most 400 lines long.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder → the package it installs as (pyproject's package-dir)
FOLDERS = {
    "runtime": "fastsam_onnx",
    "export": "fastsam_onnx.export",
    "models": "fastsam_onnx.models",
    "benchmarks": "fastsam_onnx.benchmarks",
}
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    """``fastsam_onnx...`` module name → its source file."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node of ``tree``, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _owner(name: str, modules) -> str | None:
    """The longest module of the package that ``name`` is or lies in; None outside the package."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the modules of the package it imports (see the module docstring for what counts)."""
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")
                    drop = node.level - 1 if is_package else node.level
                    base = base[: len(base) - drop] if drop else base
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
                ]
            for target in targets:
                owner = _owner(target, modules)
                if owner is not None:
                    edges.add(owner)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, and the self-imports (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):  # iterative Tarjan: the graph is small, but keep clear of the recursion limit anyway
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.fixture(scope="module")
def graph():
    return import_graph(module_files())


def test_cycle_finder_can_fail():
    """The checks below can fail: hand-made graphs with cycles are caught, an acyclic one is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    # and the graph builder sees function-level and relative imports, but not TYPE_CHECKING ones
    tree = ast.parse("if TYPE_CHECKING:\n    import x\ndef f():\n    from . import y\n")
    assert [type(n).__name__ for n in _imports(tree)] == ["ImportFrom"]


def test_graph_sees_the_package(graph):
    assert "fastsam_onnx.model" in graph["fastsam_onnx"]
    assert "fastsam_onnx.cli.segment" in graph["fastsam_onnx.cli"]  # `from . import segment`
    assert len(graph) > 50


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(graph, is_source, forbidden):
    """``A imports B`` for every edge from a module where ``is_source(A)`` into a package of ``forbidden``."""
    return sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        if is_source(m)
        for t in targets
        if any(_in(t, f) for f in forbidden)
    )


def _within(*packages):
    return lambda m: any(_in(m, p) for p in packages)


def test_server_and_ray_never_use_the_cli_or_each_other(graph):
    bad = _violations(graph, _within("fastsam_onnx.server"), ["fastsam_onnx.cli", "fastsam_onnx.distributed"])
    bad += _violations(graph, _within("fastsam_onnx.distributed"), ["fastsam_onnx.cli", "fastsam_onnx.server"])
    assert not bad, bad


#: subpackages outside the runtime core (``outputs`` and ``clip`` are inside it)
OUTER = ("cli", "server", "distributed", "benchmarks", "export", "models")
ENTRY_POINTS = ("fastsam_onnx.__main__",)  # `python -m fastsam_onnx` runs the CLI: not part of the core


def _core(module: str) -> bool:
    """The runtime core: ``fastsam_onnx`` itself, its flat modules, and the outputs and clip subpackages."""
    parts = module.split(".")
    if parts[0] != "fastsam_onnx" or module in ENTRY_POINTS:
        return False
    return len(parts) == 1 or parts[1] not in OUTER


#: the one allowed edge from the core into a front end (see the module docstring): first-use conversion of zoo models
ALLOWED = {("fastsam_onnx.zoo", "fastsam_onnx.export.native_bundle")}


def test_runtime_core_uses_no_front_end(graph):
    assert _core("fastsam_onnx.model") and _core("fastsam_onnx.outputs.edges") and _core("fastsam_onnx.clip")
    assert not _core("fastsam_onnx.cli") and not _core("fastsam_onnx.server.app") and not _core("fastsam_onnx.models")
    forbidden = [f"fastsam_onnx.{p}" for p in ("cli", "server", "distributed", "benchmarks", "export")]
    allowed = {f"{a} imports {b}" for a, b in ALLOWED}
    bad = [v for v in _violations(graph, _core, forbidden) if v not in allowed]
    assert not bad, bad


def test_manifest_resolves_no_zoo_names(graph):
    bad = _violations(graph, _within("fastsam_onnx.manifest"), ["fastsam_onnx.download", "fastsam_onnx.models"])
    assert not bad, bad


def test_modules_are_short():
    files = list(module_files().values())
    files += sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "tools").rglob("*.py"))
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
