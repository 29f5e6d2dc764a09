"""The figures both writers read: medians, speed-ups, overheads, the goals, and their number formats.

Pure functions on a report dict (``results.json``); :mod:`.report` (Markdown, README) and :mod:`.plots` (PNG)
both read them, and neither imports the other.
"""

from __future__ import annotations

from typing import Any

from .cases import MB

#: The goals of issue 5 (reported against, never asserted). Thresholds: ratio = reference ÷ ours.
GOALS = {
    "e2e_fp32": ("end to end ≥ 2× faster than ultralytics in PyTorch (fp32 graph)", 2.0),
    "e2e_int8": ("end to end ≥ 3.5× faster than ultralytics in PyTorch (int8 graph)", 3.5),
    "overhead": ("our preprocess + postprocess ≤ 5 % of the bare session.run", 0.05),
    "text": ("text prompt ≥ 3× faster than the reference's (fp32 CLIP)", 3.0),
    "text_int8": ("text prompt ≥ 3× faster than the reference's (int8 CLIP bundle)", 3.0),
    "large_time": ("4512 × 4512 photograph post-processed in ≤ 1 s", 1000.0),
    "large_memory": ("4512 × 4512 photograph: peak resident memory ≤ 1.5 GB", 1.5e9),
}
GOAL_SETTING = "CPU, FastSAM-s shape, imgsz 1024, retina masks, ≥ 40 instances"
MIN_INSTANCES = 40


def median_at(d: dict | None, *keys: str) -> float | None:
    """The median (ms) of the stats at ``d[keys[0]][keys[1]]...`` (or the number there); None when absent."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    if isinstance(d, dict):
        d = d.get("median")
    return float(d) if isinstance(d, (int, float)) else None


def find_case(report: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    """The case of ``report`` named ``name`` (None: none)."""
    return next((c for c in report.get("cases", []) if c["name"] == name), None) if name else None


def reference_of(report: dict[str, Any], case: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reference run ``case`` is compared with (None: none)."""
    if not case or not case.get("reference"):
        return None
    return report.get("references", {}).get(case["reference"])


def overhead(ours: dict[str, Any] | None) -> float | None:
    """(preprocess + postprocess medians) ÷ bare session.run median."""
    pre, post, bare = median_at(ours, "stages", "preprocess"), median_at(ours, "stages", "postprocess"), median_at(ours, "bare_run")
    return (pre + post) / bare if None not in (pre, post, bare) and bare else None


def speedup(report: dict[str, Any], case: dict[str, Any] | None, *keys: str) -> float | None:
    """reference ÷ ours of the medians at ``keys`` (e.g. "stages", "end_to_end")."""
    ref = reference_of(report, case)
    a, b = median_at(ref, *keys), median_at(case.get("ours") if case else None, *keys)
    return a / b if a is not None and b else None


def text_speedup(report: dict[str, Any], case: dict[str, Any] | None, clip: str = "fp32") -> float | None:
    """reference ÷ ours of the text prompt's median; clip "int8": our time with the int8 CLIP bundle."""
    if clip == "fp32":
        return speedup(report, case, "prompts", "text")
    a = median_at(reference_of(report, case), "prompts", "text")
    b = median_at((case or {}).get("ours"), "prompts", "int8_clip", "text")
    return a / b if a is not None and b else None


def _top_note(profile: list[dict] | None) -> str:
    """The top own-time functions of a profile, leaving out the session run itself."""
    if not profile:
        return ""
    rows = [r for r in profile if "onnxruntime" not in r["function"] and not r["function"].startswith("segment (")][:6]
    return "; ".join(f"{r['function']} {r['own_ms']:.1f} ms" for r in rows)


def evaluate_goals(
    report: dict[str, Any], *, headline: str | None, int8: str | None = None, large: str | None = None,
) -> list[dict[str, Any]]:
    """The goals, each {id, goal, target, value, met (True/False/None when not measured), note}.

    headline: the case of the goal setting (FastSAM-s shape, 1024, retina, fp32); int8: its int8 variant;
    large: the 4512 × 4512 case.
    """
    h, q, big = find_case(report, headline), find_case(report, int8), find_case(report, large)
    goals = []

    def add(gid: str, value: float | None, met: bool | None, fmt: str, case: dict | None, note: str = "") -> None:
        text, target = GOALS[gid]
        if case is not None and case.get("ours", {}).get("instances") is not None and gid != "large_memory":
            n = case["ours"]["instances"]
            if n < MIN_INSTANCES:
                note = (note + "; " if note else "") + f"only {n} instances (< {MIN_INSTANCES}) with these weights"
        goals.append({"id": gid, "goal": text, "target": target, "value": value,
                      "measured": fmt.format(value) if value is not None else "not measured",
                      "met": met, "case": case["name"] if case else None, "note": note})

    prof = lambda c: _top_note((c or {}).get("ours", {}).get("profile"))  # noqa: E731
    r = speedup(report, h, "stages", "end_to_end")
    add("e2e_fp32", r, None if r is None else r >= GOALS["e2e_fp32"][1], "{:.2f}×", h,
        "" if r is None or r >= GOALS["e2e_fp32"][1] else "profile (own time): " + prof(h))
    r = speedup(report, q, "stages", "end_to_end")
    add("e2e_int8", r, None if r is None else r >= GOALS["e2e_int8"][1], "{:.2f}×", q,
        ("no int8 case" if q is None else "") if r is None or r >= GOALS["e2e_int8"][1]
        else "profile (own time): " + prof(q))
    o = overhead(h.get("ours") if h else None)
    add("overhead", o * 100 if o is not None else None, None if o is None else o <= GOALS["overhead"][1], "{:.1f} %", h,
        "" if o is None or o <= GOALS["overhead"][1] else "profile (own time): " + prof(h))
    for gid, clip in (("text", "fp32"), ("text_int8", "int8")):
        r = text_speedup(report, h, clip)
        ours_p = (h or {}).get("ours", {}).get("prompts", {})
        ours_p = ours_p.get("int8_clip", {}) if clip == "int8" else ours_p
        note = ""
        if r is not None and r < GOALS[gid][1]:
            note = (f"ours: CLIP image {fmt_ms(median_at(ours_p, 'clip_image'))} + CLIP text "
                    f"{fmt_ms(median_at(ours_p, 'clip_text'))} of {fmt_ms(median_at(ours_p, 'text'))} ms "
                    f"({ours_p.get('text_crops')} crops)")
        add(gid, r, None if r is None else r >= GOALS[gid][1], "{:.2f}×", h, note)
    t = median_at((big or {}).get("ours"), "stages", "postprocess")
    add("large_time", t, None if t is None else t <= GOALS["large_time"][1], "{:.0f} ms", big,
        "" if t is None or t <= GOALS["large_time"][1] else "profile (own time): " + prof(big))
    m = ((big or {}).get("ours") or {}).get("memory", {}).get("peak_rss_bytes")
    add("large_memory", m, None if m is None else m <= GOALS["large_memory"][1], "{:.0f} B", big)
    if m is not None:
        goals[-1]["measured"] = f"{m / MB:.0f} MB (whole process)"
    return goals


# ---------------------------------------------------------------------------------------------------------- formats


def fmt_ms(v: float | None) -> str:
    """Milliseconds with 3 significant digits or so ("—" for None)."""
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def fmt_mb(v: float | None) -> str:
    """Bytes as whole MB (10^6 bytes)."""
    return "—" if v is None else f"{v / MB:,.0f}"


def fmt_ratio(v: float | None) -> str:
    """A ratio as "1.23×"."""
    return "—" if v is None else f"{v:.2f}×"


def median_p90(d: dict | None, *keys: str) -> str:
    """"median / p90" of the stats at keys."""
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    if not isinstance(d, dict):
        return "—"
    if "median" not in d:
        return "failed" if d.get("error") else "—"
    return f"{fmt_ms(d['median'])} / {fmt_ms(d['p90'])}"


def fmt_shape(s: Any) -> str:
    """The last two sides of a shape as "H×W"."""
    return "—" if not s else "×".join(str(v) for v in s[-2:])


