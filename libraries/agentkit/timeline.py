"""Event timelines: text for failure messages, an HTML table for log.html."""

from __future__ import annotations

import html
from collections.abc import Iterable

from .event import Event


def _rel(event: Event, origin: float | None) -> str:
    return f"+{event.received - origin:.3f}s" if origin is not None else f"{event.received:.3f}"


def text(events: Iterable[Event], origin: float | None = None, limit: int = 40, mark: Event | None = None) -> str:
    """One line per event: ``  +0.041s  #3  tool_executing  tool=search_docs``."""
    events = list(events)
    if not events:
        return "  (no events)"
    shown = events if len(events) <= limit else events[: limit // 2] + [None] + events[-limit // 2:]
    lines = []
    for e in shown:
        if e is None:
            lines.append(f"  ... {len(events) - limit} more ...")
            continue
        arrow = "->" if mark is e else "  "
        lines.append(f"{arrow}{_rel(e, origin):>9}  #{e.seq:<4} {e.type or '<not json>':<18} {e.summary(70)}")
    return "\n".join(lines)


def html_table(events: Iterable[Event], origin: float | None = None, title: str = "") -> str:
    """Readable timeline table: relative time, #, type, tool, short data."""
    rows = []
    for e in events:
        style = ""
        if e.parse_error or e.kind == "close":
            style = ' style="background:#fff3cd"'
        elif e.role == "error" or e.type in e.dialect.error_frames:
            style = ' style="background:#f8d7da"'
        tool = e.tool_name if e.role in ("tool_executing", "tool_completed") else ""
        rows.append(f"<tr{style}><td>{html.escape(_rel(e, origin))}</td><td>{e.seq}</td>"
                    f"<td>{html.escape(str(e.type or '<not json>'))}</td><td>{html.escape(str(tool or ''))}</td>"
                    f"<td>{html.escape(e.summary(100))}</td></tr>")
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    return (f'{head}<table border="1" style="border-collapse:collapse;font-family:monospace;font-size:12px">'
            "<tr><th>time</th><th>#</th><th>type</th><th>tool</th><th>data</th></tr>"
            + "".join(rows) + "</table>")
