"""Event timelines: text for failure messages, an HTML table for log.html.

Both show what a QA engineer needs to judge a frame without opening the raw log: the
time since the origin, the frame number, its name and role, the run and user it
carries, the tool with its arguments, and a short summary. Binary frames show as
binary; the close shows who closed and why."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

from .wire.event import Event
from .wire.masking import redact


def _rel(event: Event, origin: float | None) -> str:
    return f"+{event.received - origin:.3f}s" if origin is not None else f"{event.received:.3f}"


def _name(e: Event) -> str:
    if e.type:
        return f"{e.type} [binary]" if e.binary else e.type
    return "<binary>" if e.binary else "<no type>" if e.is_json_object else "<not json>"


def text(events: Iterable[Event], origin: float | None = None, limit: int = 40, mark=None) -> str:
    """One line per event: ``  +0.041s  #3  tool_executing  tool=search_docs ...``; ``->`` marks
    ``mark`` (one event or several)."""
    events = list(events)
    marked = {id(m) for m in (mark if isinstance(mark, (list, tuple, set)) else [mark]) if m is not None}
    if not events:
        return "  (no events)"
    if len(events) <= limit:
        shown = events
    else:  # the start, the marked events and the end
        keep = set(range(limit // 3)) | set(range(len(events) - limit // 3, len(events)))
        keep |= {i for i, e in enumerate(events) if id(e) in marked}
        shown, last = [], -1
        for i in sorted(keep)[: limit + 4]:
            if i != last + 1:
                shown.append(None)
            shown.append(events[i])
            last = i
    lines = []
    for e in shown:
        if e is None:
            lines.append("  ...")
            continue
        arrow = "->" if id(e) in marked else "  "
        lines.append(f"{arrow}{_rel(e, origin):>9}  #{e.seq:<4} {_name(e):<22} {e.summary(90)}")
    return redact("\n".join(lines))


def _cell(value) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, default=str)
    return html.escape(value if len(value) <= 160 else value[:159] + "…")


def html_table(events: Iterable[Event], origin: float | None = None, title: str = "", sort: bool = False) -> str:
    """Readable timeline table: time, #, frame, role, run, user, tool, arguments/result, summary."""
    events = list(events)
    if sort:
        events.sort(key=lambda e: e.seq)
    rows = []
    for e in events:
        style = ""
        if e.parse_error or e.kind == "close":
            style = ' style="background:#fff3cd"'
        elif e.role in ("error", "tool_error") or e.control == "error":
            style = ' style="background:#f8d7da"'
        tool = e.tool_name if e.role in ("tool_executing", "tool_completed", "tool_error", "tool_chunk") else None
        detail = None
        if e.role in ("tool_executing", "tool_chunk"):
            detail = e.field("parameters")
        elif e.role in ("tool_completed", "completed"):
            detail = e.field("result")
        elif e.role == "tool_arguments":
            detail = e.field("arguments_delta")
        rows.append(f"<tr{style}><td>{html.escape(_rel(e, origin))}</td><td>{e.seq}</td>"
                    f"<td>{html.escape(_name(e))}</td><td>{_cell(e.role or e.control)}</td>"
                    f"<td>{_cell(e.run_id)}</td><td>{_cell(e.user_id)}</td><td>{_cell(tool)}</td>"
                    f"<td>{_cell(detail)}</td><td>{_cell(e.summary(120))}</td></tr>")
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    return redact(f'{head}<table border="1" style="border-collapse:collapse;font-family:monospace;font-size:12px">'
                  "<tr><th>time</th><th>#</th><th>frame</th><th>role</th><th>run</th><th>user</th><th>tool</th>"
                  "<th>arguments / result</th><th>summary</th></tr>" + "".join(rows) + "</table>")


def trajectory_table(calls: list, title: str = "") -> str:
    """The tool calls of a run as an HTML table: tool, arguments, result or error, time."""
    rows = []
    for n, call in enumerate(calls, 1):
        d = call.as_dict() if hasattr(call, "as_dict") else call
        outcome = d.get("error") if d.get("error") not in (None, "") else d.get("result")
        style = ' style="background:#f8d7da"' if d.get("error") not in (None, "") else ""
        when = "" if d.get("start_s") is None else f"+{d['start_s']:.3f}s"
        rows.append(f"<tr{style}><td>{n}</td><td>{_cell(d.get('tool'))}</td><td>{_cell(d.get('arguments'))}</td>"
                    f"<td>{_cell(outcome)}</td><td>{when}</td><td>{_cell(d.get('duration_ms'))}</td></tr>")
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    return redact(f'{head}<table border="1" style="border-collapse:collapse;font-family:monospace;font-size:12px">'
                  "<tr><th>#</th><th>tool</th><th>arguments</th><th>result / error</th><th>started</th>"
                  "<th>ms</th></tr>" + ("".join(rows) or '<tr><td colspan="6">(no tool calls)</td></tr>') + "</table>")


def trajectory_text(calls: list) -> str:
    """The tool calls of a run as text lines, for failure messages."""
    if not calls:
        return "  (no tool calls)"
    lines = []
    for n, call in enumerate(calls, 1):
        d = call.as_dict() if hasattr(call, "as_dict") else call
        outcome = f"error {d['error']!r}" if d.get("error") not in (None, "") else f"result {json.dumps(d.get('result'), default=str)[:120]}"
        when = "" if d.get("start_s") is None else f" at +{d['start_s']:.3f}s"
        lines.append(f"  {n}. {d.get('tool')}({json.dumps(d.get('arguments'), default=str)[:160]}) -> {outcome}{when}")
    return redact("\n".join(lines))
