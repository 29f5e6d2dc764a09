"""The figures both writers read: medians, speed-ups, overheads, the goals, and their number formats.

Pure functions on a report dict (``results.json``); :mod:`.report` (Markdown, README) and :mod:`.plots` (PNG)
both read them, and neither imports the other.
"""

from __future__ import annotations

import re
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
MIN_REPS = 5
MIN_LARGE_REPS = 3
GOAL_IMGSZ = 1024
#: What a run needs before a goal is judged — the one place that decides it: per goal, the timed figure whose
#: sample count ``n`` must reach the minimum (on our side and on the reference's where the goal is a ratio;
#: None: no timed figure), that minimum, and whether the case must have ≥ :data:`MIN_INSTANCES` instances,
#: imgsz :data:`GOAL_IMGSZ` and retina masks (the goal setting). Short of any, the goal reads "not measured"
#: with the reason.
REQUIREMENTS: dict[str, tuple[tuple[str, ...] | None, int]] = {
    "e2e_fp32": (("stages", "end_to_end"), MIN_REPS),
    "e2e_int8": (("stages", "end_to_end"), MIN_REPS),
    "overhead": (("stages", "end_to_end"), MIN_REPS),
    "text": (("prompts", "text"), MIN_REPS),
    "text_int8": (("prompts", "int8_clip", "text"), MIN_REPS),
    "large_time": (("stages", "postprocess"), MIN_LARGE_REPS),
    "large_memory": (None, 1),
}
#: goals that compare with the reference (its sample count counts too)
RATIO_GOALS = {"e2e_fp32", "e2e_int8", "text", "text_int8"}


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


def count_at(d: dict | None, *keys: str) -> int | None:
    """The sample count ``n`` of the stats at ``d[keys[0]][keys[1]]...``; None when absent."""
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    n = d.get("n") if isinstance(d, dict) else None
    return int(n) if isinstance(n, (int, float)) else None


def overhead(ours: dict[str, Any] | None) -> float | None:
    """(preprocess + postprocess) ÷ bare session.run: the median of the per-round ratios where the run paired
    them (``paired``, see :func:`.timing.paired_rounds`), else the ratio of the medians (older results)."""
    paired = median_at(ours, "paired", "overhead")
    if paired is not None:
        return paired
    pre, post, bare = median_at(ours, "stages", "preprocess"), median_at(ours, "stages", "postprocess"), median_at(ours, "bare_run")
    return (pre + post) / bare if None not in (pre, post, bare) and bare else None


def e2e_over_bare(ours: dict[str, Any] | None) -> float | None:
    """End to end ÷ bare session.run: the median of the per-round ratios where the run paired them (≥ 1 by
    construction), else the ratio of the medians (older results)."""
    paired = median_at(ours, "paired", "e2e_over_bare")
    if paired is not None:
        return paired
    e2e, bare = median_at(ours, "stages", "end_to_end"), median_at(ours, "bare_run")
    return e2e / bare if e2e and bare else None


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


def reference_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """Where the reference keeps the figure that ours keeps at ``keys`` (it has one CLIP: no ``int8_clip``)."""
    return tuple(k for k in keys if k != "int8_clip")


def unmet(gid: str, case: dict[str, Any] | None, ref: dict[str, Any] | None = None) -> list[str]:
    """Why goal ``gid`` cannot be judged on ``case`` (and its reference ``ref``): each requirement of
    :data:`REQUIREMENTS` the run falls short of, as a phrase; [] when it has them all."""
    if case is None:
        return []
    ours, labels = case.get("ours") or {}, case.get("labels") or {}
    keys, min_reps = REQUIREMENTS[gid]
    out = []
    if keys is not None:
        for side, d, at in (("", ours, keys), ("reference: ", ref if gid in RATIO_GOALS else None, reference_keys(keys))):
            n = count_at(d, *at) if d else None
            if n is not None and n < min_reps:
                out.append(f"{side}{n} timed runs (the goal needs ≥ {min_reps})")
    n = ours.get("instances")
    if isinstance(n, int) and n < MIN_INSTANCES:
        out.append(f"{n} instances (the goal needs ≥ {MIN_INSTANCES})")
    imgsz = labels.get("imgsz")
    if imgsz is not None and imgsz != GOAL_IMGSZ:
        out.append(f"imgsz {imgsz} (the goal setting's is {GOAL_IMGSZ})")
    if labels.get("retina") is False:
        out.append("letterboxed masks (the goal setting has retina masks)")
    return out


def evaluate_goals(
    report: dict[str, Any], *, headline: str | None, int8: str | None = None, large: str | None = None,
) -> list[dict[str, Any]]:
    """The goals, each {id, goal, target, value, figure, met, measured, case, note}: ``figure`` is this run's
    figure (None: not taken), ``value`` the same where the goal is judged; ``met`` is None ("not measured") when
    the figure is missing or the run falls short of the goal's :data:`REQUIREMENTS` (the note says which).

    headline: the case of the goal setting (FastSAM-s shape, 1024, retina, fp32); int8: its int8 variant;
    large: the 4512 × 4512 case.
    """
    h, q, big = find_case(report, headline), find_case(report, int8), find_case(report, large)
    goals = []

    def add(gid: str, value: float | None, fmt: str, case: dict | None, missing: str, explain: str = "") -> None:
        """``missing``: why there is no figure; ``explain``: a note for a missed goal (``{}`` = the profile)."""
        text, target = GOALS[gid]
        lower = gid in ("overhead", "large_time", "large_memory")
        why = unmet(gid, case, reference_of(report, case))
        limit = target * 100 if gid == "overhead" else target  # (the overhead's value is in %)
        met = None if value is None or why else (value <= limit if lower else value >= limit)
        shown = (f"{value / MB:.0f} MB (whole process)" if gid == "large_memory" else apart(value, limit, fmt, met is False)
                 ) if value is not None else None
        if value is None:
            note = missing
        elif why:
            note = f"not judged: {'; '.join(why)} (this run: {shown})"
        elif met is False and explain:
            note = explain
        else:
            note = ""
        goals.append({"id": gid, "goal": text, "target": target, "value": None if met is None else value, "figure": value,
                      "measured": shown if met is not None else "not measured", "met": met,
                      "case": case["name"] if case else None, "note": note})

    def prof(c: dict | None) -> str:
        top = _top_note((c or {}).get("ours", {}).get("profile"))
        return "profile (own time): " + top if top else ""

    def ratio_missing(c: dict | None, what: str) -> str:
        return what if c is None else "no reference run" if reference_of(report, c) is None else "no figure in this run"

    add("e2e_fp32", speedup(report, h, "stages", "end_to_end"), "{:.2f}×", h, ratio_missing(h, "no fp32 case"), prof(h))
    add("e2e_int8", speedup(report, q, "stages", "end_to_end"), "{:.2f}×", q, ratio_missing(q, "no int8 case"), prof(q))
    o = overhead(h.get("ours") if h else None)
    add("overhead", o * 100 if o is not None else None, "{:.1f} %", h,
        "no case" if h is None else "no bare session.run figure", prof(h))
    for gid, clip in (("text", "fp32"), ("text_int8", "int8")):
        ours_p = (h or {}).get("ours", {}).get("prompts", {}) or {}
        ours_p = ours_p.get("int8_clip", {}) if clip == "int8" else ours_p
        explain = (f"ours: CLIP image {fmt_ms(median_at(ours_p, 'clip_image'))} + CLIP text "
                   f"{fmt_ms(median_at(ours_p, 'clip_text'))} of {fmt_ms(median_at(ours_p, 'text'))} ms "
                   f"({ours_p.get('text_crops')} crops)")
        missing = ratio_missing(h, "no case")
        if h is not None and median_at(ours_p, "text") is None:
            missing = "no text prompt timed" + (" with an int8 CLIP bundle" if clip == "int8" else "")
        add(gid, text_speedup(report, h, clip), "{:.2f}×", h, missing, explain)
    add("large_time", median_at((big or {}).get("ours"), "stages", "postprocess"), "{:.0f} ms", big,
        "no 4512 × 4512 case", prof(big))
    m = ((big or {}).get("ours") or {}).get("memory", {}).get("peak_rss_bytes")
    add("large_memory", m, "", big, "no 4512 × 4512 case")
    return goals


# ---------------------------------------------------------------------------------------------------------- formats
def apart(value: float, limit: float, fmt: str, missed: bool) -> str:
    """``fmt`` (a format with one ``{:.Nf}`` or ``{:.N%}`` field) of ``value``; for a missed goal, with up to 3
    more decimals where it would read as the goal's ``limit`` (3.497 shown as "3.50×", 0.204 as "20%")."""
    for extra in range(4):
        spec = re.sub(r"\.(\d)([f%])", lambda d: f".{int(d.group(1)) + extra}{d.group(2)}", fmt)
        text = spec.format(value)
        if not missed or text != spec.format(limit):
            break
    return text


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


