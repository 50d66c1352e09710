"""Run metrics as plain data: what the report listener records and the summary reads.

The listener (``libraries/AgentReport.py``) turns what the run did into JSON-able
records and logs each one as an HTML message inside the test (or suite setup/teardown) it
belongs to (a collapsed one-line gist in log.html, the JSON inside it), so ``output.xml`` alone is enough to rebuild the summary,
also after pabot merged the outputs of several processes. This module builds those
records from the kit's own objects and reads them back; it never touches sockets.

Record kinds (``"v": 1``):

- ``scope``: one test, suite setup or suite teardown: ``connections`` (each accepted
  handshake: alias, url, user, connection_id, handshake/welcome/connect ms, frames by
  type), ``connect_failures`` (attempts that did not reach the welcome), ``refusal_checks``
  (bad credentials that had to be refused, and whether they were), ``tokens``, ``runs``
  (agent runs: event times since the message), ``concurrency`` (the statistics
  ``Run Concurrent Sessions`` returned) and ``rss_peak_mb``.
- ``process``: one Robot process: pid, peak memory, target (secrets masked), tag filters.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import sys
from collections import Counter
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

from ..wire.masking import redact

PREFIX = "E2E-METRICS "  # how outputs written before the HTML form carry a record
VERSION = 1
MAX_RUNS_PER_SCOPE = 200      # runs with their figures per test
MAX_TIMELINES_PER_SCOPE = 3   # of which this many keep their event list
MAX_EVENTS_PER_RUN = 60

#: The one collector active in this process (a library listener and a ``--listener``
#: instance of the same class must not both record).
ACTIVE: list[object] = []


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB (``ru_maxrss``; psutil as a fallback)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)
    except (ImportError, OSError, ValueError):
        pass
    try:
        import psutil

        info = psutil.Process().memory_info()
        return round(getattr(info, "peak_wset", info.rss) / (1024 * 1024), 1)
    except Exception:  # noqa: BLE001 - memory is reported as unknown
        return None


def mask_url(url: Any) -> Any:
    """A URL without credentials or query values (a token may travel in ``?token=``)."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "****@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{kv.split('=', 1)[0]}=****" if "=" in kv else kv for kv in parts.query.split("&")) \
        if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def first_line(message: str | None, width: int = 200) -> str:
    for line in (message or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


# --- from the kit's objects ------------------------------------------------------
def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def connection_record(conn: Any, frames: list | None = None, with_handshake: bool = True) -> dict:
    """One connection in one scope: who, where, how fast (``with_handshake``: the scope that
    opened it) and what arrived in ``frames`` (default: every frame so far), by type."""
    everything = conn.snapshot()
    frames = everything if frames is None else frames
    counts = Counter((e.type or ("<binary>" if e.binary else "<not json>")) for e in frames if e.kind != "close")
    record: dict[str, Any] = {"alias": conn.alias, "opened": with_handshake, "frames": sum(counts.values()),
                              "events": dict(counts), "binary": sum(1 for e in frames if e.binary)}
    if with_handshake:
        welcome = conn.session.welcome
        hs = conn.handshake
        handshake_ms = _ms(hs.duration) if hs else None
        welcome_ms = _ms(welcome.received - conn.opened_at) if welcome is not None and conn.opened_at else None
        record.update({
            "url": mask_url(conn.spec.url),
            "user": conn.user_id,
            "connection_id": conn.dialect.welcome_field(welcome.message, "connection_id") if welcome is not None else None,
            "status": hs.status if hs else None,
            "subprotocol": redact(hs.subprotocol) if hs and hs.subprotocol else None,
            "handshake_ms": handshake_ms,
            "welcome_ms": welcome_ms,
            # Without a welcome (a dialect that has none), the connection is usable at the upgrade.
            "connect_ms": (round(handshake_ms + welcome_ms, 2) if welcome_ms is not None else handshake_ms)
            if handshake_ms is not None else None,
        })
    closed = conn.closed
    if closed is not None and closed in frames:
        record["closed"] = f"code {closed.close_code}" + (f" ({closed.close_reason})" if closed.close_reason else "") \
            + ("" if closed.closed_by == "server" else f" by the {closed.closed_by}")
    return record


def runs_of(conn: Any, start: int = 0, limit: int = MAX_RUNS_PER_SCOPE,
            timelines: int = MAX_TIMELINES_PER_SCOPE) -> list[dict]:
    """The agent runs started on a connection whose start was sent at frame index ``start``
    or later: each run's events with times since its message."""
    out = []
    runs = [r for r in conn.session.runs if r.log_index >= start]
    for n, run in enumerate(runs[:limit]):
        events = run.agent_events
        terminal = run.terminal
        out.append({
            "run_id": str(run.run_id),
            "connection": conn.alias,
            "user": conn.user_id,
            "ended": terminal.type if terminal is not None else f"no terminal event ({run.ended})",
            "first_event_ms": _ms(run.rel(events[0])) if events else None,
            "duration_ms": _ms(run.rel(terminal)) if terminal is not None else None,
            "count": len(events),
            "tools": [c.name for c in run.trajectory()],
            "events": [[_ms(run.rel(e)), e.type, e.tool_name if e.role in ("tool_executing", "tool_completed")
                        else None] for e in events[:MAX_EVENTS_PER_RUN]] if n < timelines else [],
        })
    return out


_JSONABLE = (str, int, float, bool, type(None))


def plain(value: Any) -> Any:
    """JSON-able copy of a statistics value (dicts, lists and scalars; anything else as text)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value if isinstance(value, _JSONABLE) else str(value)


# --- to and from output.xml ------------------------------------------------------
# In log.html a record is one collapsed line a reader understands ("E2E metrics: 2
# connections, 1 agent run ..."); the JSON the summary reads sits inside it, one click away.
MARK = '<details class="e2e-metrics">'


def dumps(record: dict) -> str:
    """The HTML message (``html=True``) that carries ``record`` in output.xml."""
    payload = html.escape(json.dumps(record, separators=(",", ":"), sort_keys=False, default=str), quote=False)
    return f"{MARK}<summary>E2E metrics: {html.escape(_gist(record), quote=False)}</summary><code>{payload}</code></details>"


def _gist(record: dict) -> str:
    if record.get("kind") == "process":
        target = record.get("target") or {}
        name = target.get("description") or target.get("profile") or "no target resolved"
        return f"Robot process {record.get('pid')}, peak memory {record.get('rss_peak_mb')} MB, target {name}"
    def count(value) -> int:  # lists of items; tokens are {kind: count}
        return sum(value.values()) if isinstance(value, dict) else len(value or [])

    parts = [f"{count(record.get(key))} {label}" for key, label in
             (("connections", "connection(s)"), ("runs", "agent run(s)"), ("connect_failures", "failed connect(s)"),
              ("refusal_checks", "refusal check(s)"), ("tokens", "token(s)"))]
    if record.get("concurrency"):
        parts.append("concurrent sessions")
    return f"{record.get('scope', 'scope')} '{record.get('name', '')}': " + ", ".join(parts)


def loads(message: str) -> dict | None:
    """The record in a message ``dumps`` wrote (or, from older outputs, ``E2E-METRICS {json}``)."""
    if message.startswith(MARK):
        start, end = message.find("<code>"), message.rfind("</code>")
        if start < 0 or end < start:
            return None
        text = html.unescape(message[start + len("<code>"):end])
    elif message.startswith(PREFIX):
        text = message[len(PREFIX):]
    else:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("v") == VERSION else None


def records_from_result(result: Any) -> list[dict]:
    """Every metrics record in a result model (``ExecutionResult`` or its suite), in log order."""
    from robot.api import ResultVisitor

    found: list[dict] = []

    class _Visitor(ResultVisitor):
        def visit_message(self, msg) -> None:
            text = msg.message
            if text.startswith((MARK, PREFIX)):
                record = loads(text)
                if record is not None:
                    found.append(record)

    result.visit(_Visitor())
    return found


_WS = re.compile(r"\s+")


def short(text: Any, width: int = 80) -> str:
    text = _WS.sub(" ", str(text)).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def merge_counts(counters: Iterable[dict]) -> dict[str, int]:
    total: Counter = Counter()
    for c in counters:
        total.update({k: int(v) for k, v in (c or {}).items()})
    return dict(total.most_common())
