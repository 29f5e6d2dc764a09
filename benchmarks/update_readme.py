"""Regenerate the README's benchmark section from ``benchmarks/results/results.json``.

The section lies between the markers ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in README.md; without the
markers the section is printed instead (paste it, with the markers, where it belongs).

    python benchmarks/update_readme.py [--results benchmarks/results/results.json] [--readme README.md] [--print]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastsam_onnx import bench

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _m(d: Any, *keys: str) -> float | None:
    return bench._median(d, *keys)


def section(report: dict[str, Any], results_link: str = "benchmarks/results/results.md") -> str:
    """The README section (Markdown, without the markers)."""
    m = report.get("machine", {})
    s = report.get("settings", {})
    L = [f"Measured {report.get('created', '?')[:10]} on **{bench.machine_line(m)}**, "
         f"{s.get('threads', '?')} CPU threads for both engines; medians of {s.get('reps', '?')} runs after "
         f"{s.get('warmup', '?')} warm-up runs. The reference is ultralytics {(report.get('reference_versions') or {}).get('ultralytics', '?')} "
         f"`FastSAM.predict` on PyTorch {(report.get('reference_versions') or {}).get('torch', '?')} (CPU) with the same "
         f"image, weights and settings. Weights are test-made (FastSAM-s/-x architectures). All figures: "
         f"[{results_link}]({results_link}); reproduce with `python benchmarks/run_all.py`.", ""]
    la = m.get("load_average")
    cores = m.get("usable_cores") or 0
    if la and cores and la[0] > cores:
        L += [f"Note: the machine was busy during the run (load average {la[0]:.1f} on {cores} cores).", ""]
    rows = []
    for c in report.get("cases", []):
        lab = c.get("labels", {})
        if not lab.get("retina") or lab.get("large") or lab.get("image") not in (None, "bus.jpg"):
            continue
        o, r = c.get("ours") or {}, bench.reference_of(report, c) or {}
        ov = bench.overhead(o)
        rows.append([c["name"], str(o.get("instances", "—")), bench._fmt_ms(_m(o, "stages", "end_to_end")),
                     bench._fmt_ms(_m(o, "bare_run")), "—" if ov is None else f"{ov * 100:.1f} %",
                     bench._fmt_ms(_m(r, "stages", "end_to_end")),
                     bench._fmt_ratio(bench.speedup(report, c, "stages", "end_to_end"))])
    if rows:
        L += bench._table(["case (bus.jpg, retina masks)", "instances", "ours end to end ms", "bare session.run ms",
                           "(pre + post) ÷ bare", "reference ms", "reference ÷ ours"], rows)
        L.append("")
    goals = report.get("goals") or []
    if goals:
        L.append(f"Goals ({bench.GOAL_SETTING}):")
        L.append("")
        for g in goals:
            if g["met"] is None:
                L.append(f"- {g['goal']}: not measured")
            else:
                L.append(f"- {g['goal']}: {g['measured']} — **{'met' if g['met'] else 'missed'}**")
        L.append("")
    extra = []
    cs = report.get("cold_start") or {}
    for name, v in cs.items():
        if not v.get("error"):
            extra.append(f"cold start ({name}): {v['process_s']:.1f} s for a fresh process "
                         f"(import {v['import_s'] * 1e3:.0f} ms + model {v['create_s'] * 1e3:.0f} ms)")
    for name, v in (report.get("installed_size") or {}).items():
        extra.append(f"installed size, {name}: {v['total_bytes'] / bench.MB:,.0f} MB")
    L += [f"- {e}" for e in extra]
    return "\n".join(L).rstrip() + "\n"


def update(readme: Path, text: str) -> bool:
    """Replace the text between the markers; False when the markers are absent."""
    content = readme.read_text()
    i, j = content.find(START), content.find(END)
    if i < 0 or j < i:
        return False
    readme.write_text(content[: i + len(START)] + "\n" + text + content[j:])
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "results.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--print", action="store_true", help="print the section, do not touch the README")
    args = ap.parse_args(argv)
    report = json.loads(args.results.read_text())
    text = section(report)
    if args.print or not update(args.readme, text):
        if not args.print:
            print(f"{args.readme}: no {START} … {END} markers; the section:\n", file=sys.stderr)
        print(text, end="")
        return 0
    print(f"updated the benchmark section of {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
