"""Inline SVG charts for the summary page: plain markup, no script, no network.

Each function returns one ``<svg>`` element (or a short ``<p>`` when there is nothing to
draw) with a ``<title>`` per mark, so a hover shows the exact value."""

from __future__ import annotations

import html
import math

PASS, FAIL, SKIP = "#2e7d32", "#c62828", "#f9a825"
INK, GRID, MUTED = "#1f2933", "#d9dee3", "#5f6b76"
LANE_COLOURS = {"agent_started": "#1565c0", "agent_thinking": "#6a1b9a", "tool_executing": "#ef6c00",
                "tool_completed": "#2e7d32", "agent_completed": "#00838f", "agent_error": "#c62828"}
REQUIRED = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
FONT = 'font-family="system-ui,Segoe UI,Helvetica,Arial,sans-serif"'


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _num(v: float) -> str:
    return f"{v:g}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def empty(text: str) -> str:
    return f'<p class="muted">{_e(text)}</p>'


def suite_bars(suites: list[dict], width: int = 640) -> str:
    """One stacked bar per suite: passed, failed, skipped."""
    if not suites:
        return empty("No suites with tests.")
    label_w, row_h, top = 230, 22, 8
    bar_w = width - label_w - 60
    most = max(s["total"] for s in suites) or 1
    height = top + row_h * len(suites) + 24
    out = [f'<svg class="chart" role="img" aria-label="Tests per suite" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT} font-size="12">']
    for i, s in enumerate(suites):
        y = top + i * row_h
        name = s["name"] if len(s["name"]) <= 34 else s["name"][:33] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" fill="{INK}">{_e(name)}</text>')
        x = label_w
        for key, colour in (("passed", PASS), ("failed", FAIL), ("skipped", SKIP)):
            n = s[key]
            if not n:
                continue
            w = bar_w * n / most
            out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" fill="{colour}">'
                       f'<title>{_e(s["name"])}: {n} {key}</title></rect>')
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 14}" fill="{MUTED}">{s["passed"]}/{s["total"]}</text>')
    ly = top + row_h * len(suites) + 14
    lx = label_w
    for key, colour in (("passed", PASS), ("failed", FAIL), ("skipped", SKIP)):
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 14}" y="{ly}" fill="{MUTED}">{key}</text>')
        lx += 80
    out.append("</svg>")
    return "".join(out)


def connect_histogram(samples: list[float], avg: float | None, p95: float | None, width: int = 640,
                      height: int = 230) -> str:
    """Distribution of connect times (handshake + welcome frame), with the average and p95."""
    if not samples:
        return empty("No connection reached the welcome frame: no connect times to draw.")
    left, right, top, bottom = 44, 16, 26, 40
    pw, ph = width - left - right, height - top - bottom
    hi = max(samples)
    step = _nice_step(hi, 10)
    bins = max(1, math.ceil(hi / step + 1e-9))
    if hi == 0:
        bins, step = 1, 1.0
    counts = [0] * bins
    for v in samples:
        counts[min(bins - 1, int(v // step))] += 1
    most = max(counts)
    span = bins * step
    out = [f'<svg class="chart" role="img" aria-label="Connect time distribution" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
           f'<text x="{left}" y="14" fill="{INK}" font-size="12">{len(samples)} connections, '
           f'connect time = handshake + welcome frame</text>']
    for k in range(0, most + 1, max(1, math.ceil(most / 4))):
        y = top + ph - ph * k / most
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{k}</text>')
    bw = pw / bins
    for i, n in enumerate(counts):
        if not n:
            continue
        h = ph * n / most
        x = left + i * bw
        out.append(f'<rect x="{x + 1:.1f}" y="{top + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                   f'fill="#1565c0"><title>{_num(i * step)}-{_num((i + 1) * step)} ms: {n}</title></rect>')
    for i in range(0, bins + 1, max(1, math.ceil(bins / 8))):
        x = left + i * bw
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle" fill="{MUTED}">'
                   f'{_num(i * step)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="{MUTED}">ms</text>')
    for value, label, colour in ((avg, "avg", INK), (p95, "p95", FAIL)):
        if value is None:
            continue
        x = left + pw * min(value, span) / span
        flip = x > left + pw * 0.8  # label left of the line near the right edge
        ty = top + (10 if label == "avg" else 24)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="{colour}" '
                   f'stroke-dasharray="4 3"/><text x="{x - 3 if flip else x + 3:.1f}" y="{ty}" fill="{colour}" '
                   f'text-anchor="{"end" if flip else "start"}">{label} {value:.1f} ms</text>')
    out.append("</svg>")
    return "".join(out)


def run_timeline(run: dict | None, width: int = 640) -> str:
    """One agent run: a lane per event type, a dot per event at its time since the message."""
    if not run or not run.get("events"):
        return empty("No agent run was recorded: no timeline to draw.")
    events = run["events"]
    seen = {etype for _, etype, _ in events}
    # The five required lifecycle events always get a lane: an empty lane shows what is missing.
    lanes: list[str] = list(REQUIRED)
    for _, etype, _ in events:
        if etype not in lanes:
            lanes.append(etype)
    if "agent_error" in seen and "agent_completed" not in seen:
        lanes.remove("agent_completed")
    lanes.sort(key=lambda t: list(LANE_COLOURS).index(t) if t in LANE_COLOURS else 99)
    left, right, top, lane_h = 130, 20, 30, 26
    pw = width - left - right
    height = top + lane_h * len(lanes) + 40
    end = max([float(t or 0) for t, _, _ in events] + [float(run.get("duration_ms") or 0), 0.001])
    step = _nice_step(end, 6)
    span = step * math.ceil(end / step + 1e-9)
    out = [f'<svg class="chart" role="img" aria-label="Event timeline of one run" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
           f'<text x="{left}" y="14" fill="{INK}" font-size="12">time since the message was sent (ms); '
           f'ended: {_e(run.get("ended"))}</text>']
    tick = 0.0
    while tick <= span + 1e-9:
        x = left + pw * tick / span
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + lane_h * len(lanes)}" '
                   f'stroke="{GRID}"/><text x="{x:.1f}" y="{top + lane_h * len(lanes) + 14}" text-anchor="middle" '
                   f'fill="{MUTED}">{_num(tick)}</text>')
        tick += step
    for i, lane in enumerate(lanes):
        y = top + i * lane_h + lane_h / 2
        if lane in seen:
            out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">{_e(lane)}</text>')
        else:
            out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{FAIL}" font-weight="bold">'
                       f'{_e(lane)}</text><text x="{left + 6}" y="{y + 4:.1f}" fill="{FAIL}">none received</text>')
    for n, (t, etype, tool) in enumerate(events, 1):
        x = left + pw * float(t or 0) / span
        y = top + lanes.index(etype) * lane_h + lane_h / 2
        colour = LANE_COLOURS.get(etype, MUTED)
        what = f"#{n} {etype} at {float(t or 0):.1f} ms" + (f", tool {tool}" if tool else "")
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5.5" fill="{colour}"><title>{_e(what)}</title></circle>')
    out.append("</svg>")
    return "".join(out)
