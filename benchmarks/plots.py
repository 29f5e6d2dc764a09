"""The PNG plots of a report: stages per case, speed-ups over the reference, prompt selection (matplotlib).

matplotlib (the ``[dev]`` extra) is imported inside :func:`plot_report` only; without it no plot is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .figures import GOALS, median_at, reference_of, speedup


def _save_barh(fig, ax, y, labels: list[str], xlabel: str, title: str, path: Path, written: list[Path]) -> None:
    """Label a horizontal-bar plot (rows ``y`` named ``labels``), save it to ``path``, close it and record it."""
    import matplotlib.pyplot as plt

    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)


def plot_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots: stacked stage bars per case (ours and the reference), and reference ÷ ours ratio bars.
    Returns the files written (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    cases = [c for c in report.get("cases", []) if (c.get("ours") or {}).get("stages")]
    written = []
    if not cases:
        return written
    labels, parts = [], {k: [] for k in ("preprocess", "inference", "postprocess")}
    shown: set[str] = set()
    for c in cases:
        for side, d in (("ours", c["ours"]), ("reference", reference_of(report, c))):
            if side == "reference":
                if not d or not d.get("stages") or c["reference"] in shown:
                    continue  # one bar per reference run, after the first of our variants it serves
                shown.add(c["reference"])
            labels.append(f"{c['name']} · ours" if side == "ours" else f"{c['reference']} (PyTorch fp32)")
            for k in parts:
                parts[k].append(median_at(d, "stages", k) or 0.0)
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.32 * len(labels)))
    y = np.arange(len(labels))[::-1]
    left = np.zeros(len(labels))
    colors = {"preprocess": "#4c72b0", "inference": "#dd8452", "postprocess": "#55a868"}
    for k, v in parts.items():
        ax.barh(y, v, left=left, color=colors[k], label=k if k != "inference" else "session.run / inference")
        left += np.asarray(v)
    _save_barh(fig, ax, y, labels, "median ms per image",
               "Stages per case: ours (ONNX Runtime) and the reference (ultralytics, PyTorch)", out_dir / "stages.png", written)

    rows = [(c["name"], speedup(report, c, "stages", "end_to_end"), speedup(report, c, "stages", "postprocess")) for c in cases]
    rows = [r for r in rows if r[1] is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(10, 1.5 + 0.32 * len(rows)))
        y = np.arange(len(rows))[::-1]
        ax.barh(y + 0.2, [r[1] for r in rows], height=0.4, color="#4c72b0", label="end to end")
        ax.barh(y - 0.2, [r[2] or 0 for r in rows], height=0.4, color="#55a868", label="postprocess")
        for x, style in ((1.0, "-"), (GOALS["e2e_fp32"][1], "--"), (GOALS["e2e_int8"][1], ":")):
            ax.axvline(x, color="k", linestyle=style, linewidth=0.8)
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter

        values = [v for r in rows for v in r[1:] if v]
        lo, hi = min(values + [1.0]) / 1.2, max(values + [GOALS["e2e_int8"][1]]) * 1.2
        ax.set_xlim(lo, hi)
        ax.set_xticks([v for v in (0.1, 0.25, 0.5, 1, 2, 3.5, 5, 10, 20, 50, 100) if lo <= v <= hi])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        lines = f"lines at 1, {GOALS['e2e_fp32'][1]:g} and {GOALS['e2e_int8'][1]:g}"  # the goals' thresholds
        _save_barh(fig, ax, y, [r[0] for r in rows], f"reference ÷ ours (median time; > 1: ours faster; {lines})",
                   "Speed-up over ultralytics in PyTorch", out_dir / "ratios.png", written)

    prow = [(c["name"], c["ours"]["prompts"], (reference_of(report, c) or {}).get("prompts") or {})
            for c in cases if c["ours"].get("prompts")]
    if prow:
        kinds = [k for k in ("box", "point", "text") if any(median_at(o, k) is not None for _, o, _ in prow)]
        fig, ax = plt.subplots(figsize=(10, 1.5 + 0.5 * len(prow) * max(1, len(kinds))))
        labels, ours_v, ref_v = [], [], []
        for name, o, r in prow:
            for k in kinds:
                labels.append(f"{name} · {k}")
                ours_v.append(median_at(o, k) or 0.0)
                ref_v.append(median_at(r, k) or 0.0)
        y = np.arange(len(labels))[::-1]
        ax.barh(y + 0.2, ours_v, height=0.4, color="#4c72b0", label="ours")
        ax.barh(y - 0.2, ref_v, height=0.4, color="#c44e52", label="reference")
        ax.set_xscale("symlog", linthresh=1.0)
        _save_barh(fig, ax, y, labels, "median ms per prompt call", "Prompt selection", out_dir / "prompts.png", written)
    return written


