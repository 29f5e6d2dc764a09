"""A report's life: :func:`new_report` starts one, :func:`write_report` writes it out (results.json, results.md,
PNG plots). The one module that calls both writers, so :mod:`.report` and :mod:`.plots` never import each other."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from fastsam_onnx.fileio import atomic_write_text

from .machine import machine_info
from .report import render_markdown

REPORT_VERSION = 1


def new_report(settings: dict[str, Any]) -> dict[str, Any]:
    """An empty report: version, creation time, machine, settings; cases and references to be filled in."""
    return {
        "version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": settings,
        "cases": [],
        "references": {},
        "notes": [],
    }


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str], plots: bool = True) -> dict[str, Path]:
    """``results.json`` (every figure), ``results.md`` and, with ``plots`` and matplotlib installed, the PNG
    plots under ``out_dir`` (each file written whole or not at all); returns the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used = sorted({p for c in report.get("cases", []) for p in (c.get("ours") or {}).get("providers", [])})
    if used:
        report["machine"]["providers_used"] = used
    paths = {"json": out / "results.json", "md": out / "results.md"}
    atomic_write_text(paths["json"], json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(paths["md"], render_markdown(report))
    if plots:
        from .plots import plot_report

        for p in plot_report(report, out):
            paths[p.stem] = p
    return paths
