"""Regenerate the README's benchmark section from ``benchmarks/results/results.json``.

The section (written by :func:`fastsam_onnx.benchmarks.report.section`) lies between the markers
``<!-- bench:start -->`` and ``<!-- bench:end -->`` in README.md; without the markers the section is printed
instead (paste it, with the markers, where it belongs).

    python tools/update_readme.py [--results benchmarks/results/results.json] [--readme README.md] [--print]

A repository tool (``tools/`` is not installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastsam_onnx.benchmarks.report import END, START, section

__all__ = ["START", "END", "section", "update", "main"]

ROOT = Path(__file__).resolve().parents[1]


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
