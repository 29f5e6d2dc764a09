"""Regenerate the generated blocks of the README and the documentation from their one source each.

    python tools/update_readme.py            # rewrite every block
    python tools/update_readme.py --check    # exit 1 when a committed block differs from its source
    python tools/update_readme.py --print    # print the benchmark section only

A block lies between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in its file:

=================  =========================  ===============================================================
block              file                       source
=================  =========================  ===============================================================
``bench``          docs/benchmarks.md         ``benchmarks/results/results.json`` (``fastsam-onnx bench``),
                                              written by :func:`fastsam_onnx.benchmarks.report.section`
``size``           docs/benchmarks.md         the same file's ``installed_size``, checked against the base
                                              requirements of ``pyproject.toml``
``ray``            docs/benchmarks.md         ``benchmarks/results/distributed.json``
                                              (``python -m fastsam_onnx.benchmarks.distributed``)
``extras``         docs/getting-started.md    ``pyproject.toml``'s optional dependencies (+ :data:`EXTRA_USES`)
``zoo``            docs/models.md             ``fastsam_onnx.models.registry.MODELS``
``figures``        README.md                  ``benchmarks/results/results.json``
=================  =========================  ===============================================================

``tests/test_docs.py`` runs the check. A repository tool (``tools/`` is not installed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

from fastsam_onnx.benchmarks.report import END, START, section

__all__ = ["START", "END", "section", "update", "replace_block", "render_blocks", "main", "EXTRA_USES"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MB = 1e6

#: what each extra is for (the packages it adds are read from pyproject.toml); a new extra needs a line here
EXTRA_USES = {
    "gpu": "NVIDIA CUDA and TensorRT: see [GPU install](gpu.md)",
    "cpu": "ONNX Runtime for CPUs (x86-64, arm64, macOS): install `[cpu]` or `[gpu]`",
    "fp16": "`export fastsam --half` without PyTorch",
    "server": "`fastsam-onnx serve` ([Server](serving.md))",
    "ray": "`segment --engine ray`, `fastsam_onnx.distributed` ([Scale-out on Ray](scale-out.md))",
    "eval": "`fastsam-onnx evaluate` ([Evaluation](evaluation.md))",
    "export": "`--converter torch`, the PyTorch reference exporter ([Models](models.md#the-torch-exporter))",
    "docs": "building this site (`mkdocs build --strict`)",
    "clip": "an empty alias kept for old instructions: text prompts need no extra",
    "dev": "working on fastsam-onnx: `CONTRIBUTING.md` in the repository",
}


def _marker(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(content: str, name: str, text: str) -> str | None:
    """``content`` with block ``name`` replaced by ``text``; None when its markers are absent."""
    start, end = (START, END) if name == "bench" else _marker(name)
    i, j = content.find(start), content.find(end)
    if i < 0 or j < i:
        return None
    return content[: i + len(start)] + "\n" + text + content[j:]


def update(readme: Path, text: str) -> bool:
    """Replace the benchmark section (between :data:`START` and :data:`END`) of ``readme``; False without the
    markers."""
    new = replace_block(readme.read_text(), "bench", text)
    if new is None:
        return False
    readme.write_text(new)
    return True


# ------------------------------------------------------------------------------------------------ the blocks

def _requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def extras_block() -> str:
    """The extras table: each extra of pyproject.toml, the distributions it adds, what it is for."""
    extras = pyproject()["project"].get("optional-dependencies", {})
    rows = ["| extra | adds | for |", "| --- | --- | --- |"]
    for name, reqs in extras.items():
        own, others = [], []
        for r in reqs:
            m = re.match(r"fastsam-onnx\[([^\]]+)\]", r.strip())
            if m:
                others += [e.strip() for e in m.group(1).split(",")]
            else:
                own.append(_requirement_name(r))
        adds = ", ".join(own) if own else "nothing"
        if others:
            adds = "the extras " + ", ".join(f"`[{e}]`" for e in others) + (f" and {adds}" if own else "")
        use = EXTRA_USES.get(name)
        if use is None:
            raise SystemExit(f"tools/update_readme.py: the extra [{name}] has no line in EXTRA_USES")
        rows.append(f"| `[{name}]` | {adds} | {use} |")
    return "\n".join(rows) + "\n"


def _report() -> dict[str, Any]:
    return json.loads((RESULTS / "results.json").read_text())


def bench_block() -> str:
    return section(_report(), results_link="benchmark-results.md")


def size_block() -> str:
    """The base install's size as ``bench`` measured it, per distribution, and which current base requirements
    the measurement predates."""
    report = _report()
    sizes = report.get("installed_size") or {}
    date = str(report.get("created", "?"))[:10]
    L = []
    for label, v in sizes.items():
        L.append(f"**{label}**: {v['total_bytes'] / MB:,.0f} MB (measured {date} by `fastsam-onnx bench`"
                 + (f"; {', '.join(v['notes'])}" if v.get("notes") else "") + ")")
        L.append("")
        if v.get("root") == "fastsam-onnx":
            L += ["| distribution | MB |", "| --- | ---: |"]
            L += [f"| {k} | {b / MB:,.1f} |" for k, b in v.get("packages", {}).items()]
            L.append("")
            measured = {_canon(k) for k in v.get("packages", {})}
            now = [_requirement_name(r) for r in pyproject()["project"].get("dependencies", [])]
            missing = [n for n in now if _canon(n) not in measured]
            extras = pyproject()["project"].get("optional-dependencies", {})
            moved = {k: e for e in ("cpu", "gpu") if e not in v.get("extras", []) for k in v.get("packages", {})
                     if _canon(k) in {_canon(_requirement_name(r)) for r in extras.get(e, [])}
                     and _canon(k) not in {_canon(n) for n in now}}
            notes = []
            if missing:
                notes.append(f"it predates base requirements that the install has now: {', '.join(missing)}")
            if moved:
                notes.append("it counts " + ", ".join(f"{k} (now the `[{e}]` extra)" for k, e in moved.items()))
            if notes:
                L += ["This measurement is older than the current requirements: " + "; ".join(notes)
                      + ". Run `fastsam-onnx bench` again to measure them.", ""]
    return "\n".join(L).rstrip() + "\n" if L else "Not measured yet: run `fastsam-onnx bench`.\n"


def ray_block() -> str:
    d = json.loads((RESULTS / "distributed.json").read_text())
    one = d["one_machine"]
    L = [f"Machine: {d['machine']}; Ray {d.get('ray', (d.get('machine_info') or {}).get('ray', ''))}".rstrip("; Ray ")
         + f". Model: {d['model']}, {d['images']} images per job, batch size {d['batch_size']}, medians of "
         f"{d['reps']} runs. Steady images/s = {d['images']} / (t({2 * d['images']} images) - t({d['images']} "
         "images)); \"fixed\" = the rest of one job's time.", ""]
    L += ["| run | images/s (steady) | vs CLI | fixed cost per job, s |", "|---|---:|---:|---:|"]
    cli = one["cli"]["images_per_s"]
    names = {"cli": "CLI folder mode (`--out-dir`, 1 process)"}
    for key, v in one.items():
        if not isinstance(v, dict):
            continue
        m = re.fullmatch(r"ray_(\d+)x(\d+)", key)
        name = names.get(key) or (f"Ray, {m.group(1)} worker(s) × {m.group(2)} thread(s)" if m else key)
        L.append(f"| {name} | {v['images_per_s']:.1f} | {v['images_per_s'] / cli:.2f}× | {v['fixed_s']:.1f} |")
    if "ray_init_s" in one:
        L += ["", f"Starting a local Ray instance (`ray.init`) took {one['ray_init_s']:.1f} s once per command, on top."]
    multi = d.get("multi_node") or []
    if multi:
        L += ["", "Multi-node (`ray.cluster_utils.Cluster`, 1 CPU per node, one worker per node):", "",
              "| nodes | workers | nodes with rows | images/s (steady) | speedup |", "|---:|---:|---:|---:|---:|"]
        L += [f"| {r['nodes']} | {r['workers']} | {r['nodes_with_rows']} | {r['images_per_s']:.1f} | {r['speedup']:.2f}× |"
              for r in multi]
    return "\n".join(L) + "\n"


def zoo_block() -> str:
    from fastsam_onnx.models.registry import MODELS

    rows = ["| name | kind | checkpoint | bytes | SHA-256 |", "|---|---|---|---:|---|"]
    for m in MODELS:
        s = m.source
        if s.url is None:
            rows.append(f"| `{m.name}` | {m.kind} | shipped inside the package: {m.description} | | the bundle manifest's |")
            continue
        rows.append(f"| `{m.name}` | {m.kind} | [{s.filename}]({s.url}){' (' + ', '.join(f'{k}={v}' for k, v in m.recipe.items()) + ')' if m.recipe else ''} "
                    f"| {s.size:,} | `{s.sha256}` |")
    return "\n".join(rows) + "\n"


def figures_block() -> str:
    """The README's one line of figures: the goal setting's case, fp32 and int8, against the reference."""
    from fastsam_onnx.benchmarks.figures import find_case, median_at, reference_of

    report = _report()
    m = report.get("machine", {})

    def case(name: str) -> str | None:
        c = find_case(report, name)
        if c is None:
            return None
        ours, ref = median_at(c.get("ours") or {}, "stages", "end_to_end"), median_at(reference_of(report, c) or {}, "stages", "end_to_end")
        if not ours or not ref:
            return None
        return f"{ours:.0f} ms against the reference's {ref:.0f} ms ({ref / ours:.2f}×)"

    fp32, int8 = case("s-1024-bus-retina-fp32-dyn"), case("s-1024-bus-retina-int8-dyn")
    parts = [p for p in (f"fp32 {fp32}" if fp32 else None, f"int8 {int8}" if int8 else None) if p]
    return (f"Speed, measured {str(report.get('created', '?'))[:10]} by `fastsam-onnx bench` on {m.get('cpu', '?')} "
            f"({m.get('usable_cores', '?')} cores, no GPU): FastSAM-s-shaped model, 1024, bus.jpg, end to end: "
            + "; ".join(parts) + ". All figures: [Benchmarks](docs/benchmarks.md).\n")


#: a page may include the suite's generated summary instead of the ``bench`` block
SUMMARY_INCLUDE = '--8<-- "benchmarks/results/summary.md"'

#: (file, block name, renderer)
BLOCKS: list[tuple[Path, str, Callable[[], str]]] = [
    (ROOT / "docs" / "benchmarks.md", "bench", bench_block),
    (ROOT / "docs" / "benchmarks.md", "size", size_block),
    (ROOT / "docs" / "benchmarks.md", "ray", ray_block),
    (ROOT / "docs" / "getting-started.md", "extras", extras_block),
    (ROOT / "docs" / "models.md", "zoo", zoo_block),
    (ROOT / "README.md", "figures", figures_block),
]


def render_blocks() -> dict[Path, str]:
    """Every file with its blocks regenerated (files whose blocks are all present)."""
    out: dict[Path, str] = {}
    for path, name, render in BLOCKS:
        content = out.get(path, path.read_text())
        new = replace_block(content, name, render())
        if new is None and name == "bench" and SUMMARY_INCLUDE in content:
            new = content  # the page includes benchmarks/results/summary.md (tools/run_benchmarks.py writes it)
        if new is None:
            raise SystemExit(f"{path.relative_to(ROOT)}: no <!-- {name}:start --> ... <!-- {name}:end --> markers")
        out[path] = new
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed block is stale; write nothing")
    ap.add_argument("--print", action="store_true", help="print the benchmark section, touch nothing")
    args = ap.parse_args(argv)
    if args.print:
        print(bench_block(), end="")
        return 0
    stale = []
    for path, text in render_blocks().items():
        if path.read_text() != text:
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(text)
    if args.check:
        if stale:
            print(f"stale generated blocks in {', '.join(stale)}: run python tools/update_readme.py", file=sys.stderr)
            return 1
        return 0
    print(f"updated: {', '.join(stale) or 'nothing (all blocks current)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
