"""The writers of text: the Markdown report (``results.md``) and the README's benchmark section.

Both read a report dict (``results.json``) through :mod:`.figures`; nothing here measures or plots.
"""

from __future__ import annotations

from typing import Any

from .cases import MB, PROMPTS
from .figures import (
    GOAL_SETTING, e2e_over_bare, fmt_mb, fmt_ms, fmt_ratio, fmt_shape, median_at, median_p90, overhead, reference_of,
    speedup, text_speedup,
)
from .machine import machine_line

#: The README section lies between these markers (see ``tools/update_readme.py``).
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
RESULTS_LINK = "benchmarks/results/results.md"
#: How the bare session.run of a paired run reads (results.md, under the end-to-end table).
PAIRED_NOTE = [
    "Bare session.run: onnxruntime alone on the same input tensor, paired with the end-to-end runs: each round "
    "times one bare call and one `segment` call (their order alternating), and the round's bare figure is the "
    "faster of its two runs of the graph (the bare call, the one inside `segment`). So end to end ≥ bare in every "
    "round and \"ours ÷ bare\" (the median of the per-round ratios) is ≥ 1; the bare calls alone are in results.json "
    "(`bare_run_alone`).",
]
#: The mark and the note of a bare session.run timed apart from the end-to-end runs (results from before pairing).
UNPAIRED = " ‡"
UNPAIRED_NOTE = ("‡ bare session.run timed apart from the end-to-end runs (results measured before the two were "
                 "paired round by round), so noise can put it above the end-to-end figure; no ratio is shown where it does.")


def _bare(o: dict[str, Any], cell: str) -> str:
    """A bare session.run cell, marked :data:`UNPAIRED` where the case was not timed paired."""
    return cell + UNPAIRED if o.get("bare_run") and not o["bare_run"].get("paired") else cell


def _unpaired(cases: list[dict[str, Any]]) -> bool:
    return any(_bare(c.get("ours") or {}, "") for c in cases)


def _over_bare(o: dict[str, Any]) -> str:
    """ours ÷ bare, or "—" where an unpaired bare run came out slower than end to end."""
    r = e2e_over_bare(o)
    return "—" if r is not None and r < 1 and _bare(o, "") else fmt_ratio(r)


def md_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A Markdown table; the first ``text_columns`` columns left-aligned, the rest (numbers) right-aligned."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine, end to end, stages, prompts, the large image, cold start, size, goals."""
    m = report.get("machine", {})
    s = report.get("settings", {})
    L = ["# fastsam-onnx benchmarks", ""]
    L.append(f"Created {report.get('created', '?')} · {s.get('reps', '?')} timed runs after {s.get('warmup', '?')} warm-up "
             f"runs per case · conf {s.get('conf', '?')}, iou {s.get('iou', '?')}, max_det {s.get('max_det', '?')} · "
             "times in milliseconds, median / p90 unless marked."
             + (f" Made by `{s['command']}`." if s.get("command") else ""))
    L += ["", "## Machine", ""]
    L.append(f"- {machine_line(m)}")
    if s.get("threads") is not None:
        L.append(f"- CPU threads: {s['threads']} (onnxruntime intra-op threads / torch.set_num_threads)")
    la0, la1 = m.get("load_average"), report.get("load_average_end")
    if la0:
        L.append(f"- load average (1/5/15 min) at the start: {', '.join(f'{v:.2f}' for v in la0)}"
                 + (f"; at the end: {', '.join(f'{v:.2f}' for v in la1)}" if la1 else ""))
    ref = report.get("reference_versions")
    if ref:
        L.append(f"- reference: ultralytics {ref.get('ultralytics')} on torch {ref.get('torch')} "
                 f"({ref.get('torch_threads')} threads), device {ref.get('device', 'cpu')}")

    cases = report.get("cases", [])
    L += ["", "## End to end", ""]
    rows = []
    for c in cases:
        o, r = c.get("ours") or {}, reference_of(report, c) or {}
        rows.append([
            c["name"], f"{o.get('instances', '—')} / {r.get('instances', '—')}",
            f"{fmt_shape(o.get('input_shape'))} / {fmt_shape(r.get('input_shape'))}",
            median_p90(o, "stages", "end_to_end"), _bare(o, median_p90(o, "bare_run")),
            _over_bare(o),
            median_p90(r, "stages", "end_to_end") if not r.get("error") else "failed",
            fmt_ratio(speedup(report, c, "stages", "end_to_end")),
            f"{fmt_mb(o.get('memory', {}).get('peak_rss_bytes'))} / {fmt_mb((r.get('memory') or {}).get('peak_rss_bytes'))}",
        ])
    L += md_table(["case", "instances ours / ref", "input ours / ref", "ours end to end", "bare session.run",
                 "ours ÷ bare", "reference end to end", "ref ÷ ours", "peak RSS MB ours / ref"], rows)
    L.append("")
    L.append("Peak RSS: the case's child process (VmHWM) after segmenting, before any prompt (CLIP) was loaded.")
    L += ["", UNPAIRED_NOTE] if _unpaired(cases) else []
    L += [""] + PAIRED_NOTE if any(((c.get("ours") or {}).get("bare_run") or {}).get("paired") for c in cases) else []

    L += ["", "## Stages (medians)", ""]
    rows = []
    for c in cases:
        o, r = c.get("ours") or {}, reference_of(report, c) or {}
        ov = overhead(o)
        rows.append([c["name"], fmt_ms(median_at(o, "stages", "preprocess")), fmt_ms(median_at(o, "stages", "inference")),
                     fmt_ms(median_at(o, "stages", "postprocess")), "—" if ov is None else f"{ov * 100:.1f} %",
                     fmt_ms(median_at(r, "stages", "preprocess")), fmt_ms(median_at(r, "stages", "inference")),
                     fmt_ms(median_at(r, "stages", "postprocess")), fmt_ratio(speedup(report, c, "stages", "postprocess"))])
    L += md_table(["case", "ours pre", "ours session.run", "ours post", "(pre + post) ÷ bare", "ref pre", "ref inference",
                 "ref post", "post: ref ÷ ours"], rows)

    pcases = [c for c in cases if (c.get("ours") or {}).get("prompts")]
    if pcases:
        L += ["", "## Prompts (on one segment-everything result)", ""]
        rows = []
        for c in pcases:
            op, rp = c["ours"]["prompts"], (reference_of(report, c) or {}).get("prompts") or {}
            cells = [c["name"]]
            for k in PROMPTS:
                cells.append(f"{median_p90(op, k)} · {median_p90(rp, k)}")
            cells += [fmt_ratio(speedup(report, c, "prompts", "text")), str(op.get("text_crops", "—")),
                      op.get("clip_precision", "—") if "text" in op else "—"]
            rows.append(cells)
            q = op.get("int8_clip")
            if q:
                rows.append([f"{c['name']} (int8 CLIP)", "—", "—"] + [f"{median_p90(q, k)} · {median_p90(rp, k)}" for k in PROMPTS[2:]]
                            + [fmt_ratio(text_speedup(report, c, "int8")), str(q.get("text_crops", "—")), q.get("clip_precision", "—")])
        L += md_table(["case", "box ours · ref", "point ours · ref", "text ours · ref", "CLIP image ours · ref",
                     "CLIP text (uncached) ours · ref", "text: ref ÷ ours", "CLIP crops", "our CLIP"], rows)

    big = [c for c in cases if c.get("labels", {}).get("large")]
    if big:
        size = (big[0].get("ours") or {}).get("image_shape")
        L += ["", f"## A {' × '.join(str(v) for v in size[1::-1]) if size else 'large'} photograph (mask assembly)", ""]
        rows = []
        for c in big:
            o, r = c.get("ours") or {}, reference_of(report, c) or {}
            om, rm = o.get("memory", {}), r.get("memory") or {}
            rows.append([c["name"], f"{o.get('instances', '—')} / {r.get('instances', '—')}",
                         median_p90(o, "stages", "postprocess"), median_p90(r, "stages", "postprocess") if not r.get("error") else "failed",
                         fmt_ratio(speedup(report, c, "stages", "postprocess")),
                         f"{fmt_mb(om.get('peak_rss_bytes'))} / {fmt_mb(rm.get('peak_rss_bytes') or r.get('peak_rss_seen_bytes'))}",
                         f"{fmt_mb(om.get('baseline_peak_rss_bytes'))} / {fmt_mb(rm.get('baseline_peak_rss_bytes'))}",
                         fmt_mb(o.get("postprocess_traced_peak_bytes"))])
        L += md_table(["case", "instances ours / ref", "ours postprocess", "ref postprocess", "ref ÷ ours",
                     "peak RSS MB ours / ref", "peak RSS before the big image MB ours / ref",
                     "our postprocess heap peak MB (tracemalloc)"], rows)
        for c in big:
            r = reference_of(report, c) or {}
            if r.get("error"):
                L.append(f"\nReference on {c['name']}: {r['error']}")

    cs = report.get("cold_start") or {}
    if cs:
        L += ["", "## Cold start (fresh interpreter; medians)", ""]
        rows = []
        for name, v in cs.items():
            if v.get("error"):
                rows.append([name, "failed", "", "", "", ""])
                continue
            rows.append([name, f"{v['import_s'] * 1e3:.0f}", f"{v['create_s'] * 1e3:.0f}", f"{v['process_s'] * 1e3:.0f}",
                         fmt_mb(v.get("peak_rss_bytes")), str(v.get("n"))])
        L += md_table(["model", "import ms", "model creation ms", "whole process ms", "peak RSS MB", "processes"], rows)

    sz = report.get("installed_size") or {}
    if sz:
        L += ["", "## Installed size", ""]
        for label, v in sz.items():
            top = ", ".join(f"{k} {b / MB:.0f}" for k, b in list(v["packages"].items())[:6])
            cuda = f"; of which CUDA/Triton libraries {v['cuda_bytes'] / MB:,.0f} MB" if v.get("cuda_bytes") else ""
            L.append(f"- {label}: **{v['total_bytes'] / MB:,.0f} MB** in {len(v['packages'])} distributions "
                     f"(largest, MB: {top}{cuda})" + (f"; not installed: {', '.join(v['missing'])}" if v.get("missing") else ""))

    goals = report.get("goals") or []
    if goals:
        L += ["", f"## Goals ({GOAL_SETTING})", ""]
        rows = []
        for g in goals:
            status = "not measured" if g["met"] is None else "**met**" if g["met"] else "**missed**"
            rows.append([g["goal"], g["measured"], status, g.get("case") or "—", g.get("note") or ""])
        L += md_table(["goal", "measured", "status", "case", "note"], rows, text_columns=5)

    prof = [(c["name"], c["ours"]["profile"]) for c in cases if (c.get("ours") or {}).get("profile")]
    if prof:
        L += ["", "## Where our time goes (cProfile of `segment`, own time per call)", ""]
        for name, rows_ in prof:
            L.append(f"- {name}: " + "; ".join(f"`{r['function']}` {r['own_ms']:.1f} ms" for r in rows_[:8]))

    failed = [(c["name"], side, d["error"]) for c in cases for side, d in (("ours", c.get("ours")), ("reference", reference_of(report, c)))
              if isinstance(d, dict) and d.get("error")]
    notes = list(report.get("notes", [])) + [f"{n} ({side}) failed: {e}" for n, side, e in dict.fromkeys(failed)]
    for c in cases:
        notes += [f"{c['name']}: {n}" for n in (c.get("ours") or {}).get("notes", [])]
    if notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(L) + "\n"


def suite_command(report: dict[str, Any]) -> str:
    """The command that made ``report``: the one it recorded (``settings["command"]``), else the suite's command
    rebuilt from its settings (results from before the command was recorded)."""
    s = report.get("settings", {})
    if s.get("command"):
        return str(s["command"])
    opts = [f"--{k} {' '.join(str(v) for v in s[k])}" for k in ("models", "sizes", "images", "precisions") if s.get(k)]
    return " ".join(["python tools/run_benchmarks.py", *opts])


def summary_markdown(report: dict[str, Any]) -> str:
    """``benchmarks/results/summary.md``: the headline figures, dated, with the machine and the command that
    measured them, for the documentation to include verbatim (no links, so it reads the same anywhere)."""
    return section(report, results_link=None)


def section(report: dict[str, Any], results_link: str | None = RESULTS_LINK) -> str:
    """The headline figures (Markdown): the README / docs section and :func:`summary_markdown`. ``results_link``:
    where the full report's link points (None: name ``benchmarks/results/results.md`` without a link)."""
    m = report.get("machine", {})
    s = report.get("settings", {})
    full = f"[{results_link}]({results_link})" if results_link else "`benchmarks/results/results.md`"
    L = [f"Measured {report.get('created', '?')[:10]} on **{machine_line(m)}**, "
         f"{s.get('threads', '?')} CPU threads for both engines; medians of {s.get('reps', '?')} runs after "
         f"{s.get('warmup', '?')} warm-up runs. The reference is ultralytics {(report.get('reference_versions') or {}).get('ultralytics', '?')} "
         f"`FastSAM.predict` on PyTorch {(report.get('reference_versions') or {}).get('torch', '?')} (CPU) with the same "
         f"image, weights and settings. Weights are test-made (FastSAM-s/-x architectures). All figures: "
         f"{full}, made by `{suite_command(report)}` (run it again to reproduce).", ""]
    la = max([v[0] for v in (m.get("load_average"), report.get("load_average_end")) if v] or [0.0])
    cores = m.get("usable_cores") or 0
    if cores and la > cores:
        L += [f"Note: the machine was busy during the run (load average {la:.1f} on {cores} cores).", ""]
    rows = []
    for c in report.get("cases", []):
        lab = c.get("labels", {})
        if not lab.get("retina") or lab.get("large") or lab.get("image") not in (None, "bus.jpg"):
            continue
        o, r = c.get("ours") or {}, reference_of(report, c) or {}
        ov = overhead(o)
        rows.append([c["name"], str(o.get("instances", "—")), fmt_ms(median_at(o, "stages", "end_to_end")),
                     _bare(o, fmt_ms(median_at(o, "bare_run"))), "—" if ov is None else f"{ov * 100:.1f} %",
                     fmt_ms(median_at(r, "stages", "end_to_end")),
                     fmt_ratio(speedup(report, c, "stages", "end_to_end"))])
    if rows:
        L += md_table(["case (bus.jpg, retina masks)", "instances", "ours end to end ms", "bare session.run ms",
                       "(pre + post) ÷ bare", "reference ms", "reference ÷ ours"], rows)
        L += ["", UNPAIRED_NOTE] if any(UNPAIRED in r[3] for r in rows) else []
        L.append("")
    goals = report.get("goals") or []
    if goals:
        L.append(f"Goals ({GOAL_SETTING}):")
        L.append("")
        for g in goals:
            if g["met"] is None:
                L.append(f"- {g['goal']}: not measured" + (f" ({g['note']})" if g.get("note") else ""))
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
        extra.append(f"installed size, {name}: {v['total_bytes'] / MB:,.0f} MB")
    L += [f"- {e}" for e in extra]
    return "\n".join(L).rstrip() + "\n"
