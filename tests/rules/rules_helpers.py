"""Builders for the pure tests of ``agentkit.wire`` and ``agentkit.rules``: hand-written
frames fed through a sans-I/O :class:`AgentSession` (or straight into a :class:`RunRecord`),
and checks that a violation names its event and id. No sockets, no processes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterable

from agentkit.rules import Violation, check_conformance
from agentkit.wire import dialect as dialects
from agentkit.wire.dialect import Dialect
from agentkit.wire.event import Event
from agentkit.wire.run import RunRecord
from agentkit.wire.session import AgentSession

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SENT_AT = 100.0
GAP = 0.01          # seconds between two hand-written frames
CONNECTION = "conn-1"


def load(name: str) -> Dialect:
    return dialects.load(name)


def frame(seq: int, message: Any, dialect: Dialect, at: float | None = None) -> Event:
    """One received frame: a JSON value (sent as text), a str (sent as is) or bytes (binary)."""
    text = message if isinstance(message, (str, bytes)) else json.dumps(message)
    return Event.from_text(seq, SENT_AT + GAP * seq if at is None else at, CONNECTION, text, dialect)


def run_through_session(dialect: Dialect, messages: Iterable[Any], *, user_id: str | None = "alice",
                        thread_id: str = "t1", run_id: str = "r1", close: int | None = None,
                        grace: float = 0.3) -> tuple[AgentSession, RunRecord]:
    """Start one run on a fresh session and feed it ``messages`` GAP seconds apart (then a
    close with code ``close``, if given)."""
    session = AgentSession(dialect, CONNECTION, user_id, grace=grace)
    run, _ = session.start_run("What is the weather in Paris?", thread_id=thread_id, run_id=run_id,
                               sent_at=SENT_AT)
    seq = 0
    for seq, message in enumerate(messages, start=1):
        session.receive(frame(seq, message, dialect))
    if close is not None:
        seq += 1
        session.receive(Event.closed(seq, SENT_AT + GAP * seq, CONNECTION, close, "", dialect))
    return session, run


def record(dialect: Dialect, messages: Iterable[Any], *, user_id: str | None = "alice", thread_id: str = "t1",
           run_id: str = "r1") -> RunRecord:
    """A RunRecord built directly: every message belongs to the run (several runs in one stream)."""
    events = [frame(seq, m, dialect) for seq, m in enumerate(messages, start=1)]
    return RunRecord(CONNECTION, user_id, run_id, thread_id, SENT_AT, events, dialect=dialect)


def violations(run: RunRecord, rule: int | None = None, schemas: bool = True) -> list[Violation]:
    found = check_conformance(run, schemas=schemas)
    return [v for v in found if rule is None or v.rule == rule]


def show(found: list[Violation]) -> str:
    return "\n".join(str(v) for v in found) or "no violation"


def assert_clean(run: RunRecord, schemas: bool = True) -> None:
    found = violations(run, schemas=schemas)
    assert not found, show(found)


def only(run: RunRecord, rule: int, schemas: bool = True) -> Violation:
    """The one violation of a run, which must be of ``rule``."""
    found = violations(run, schemas=schemas)
    assert len(found) == 1, show(found)
    assert found[0].rule == rule, show(found)
    return found[0]


def assert_names(violation: Violation, event_type: str, seq: int, *ids: Any) -> None:
    """The message names the event as ``TYPE (#seq)`` and every id quoted (``'c1'``)."""
    text = violation.message
    assert f"{event_type} (#{seq})" in text, f"expected {event_type} (#{seq}) named in: {text}"
    for value in ids:
        assert repr(value) in text, f"expected the id {value!r} named in: {text}"


def b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def make_jwt(sub: str = "alice-0123456789", signature: str = "c2lnbmF0dXJlLW5vdC1jaGVja2VkLWhlcmUtMDEyMzQ1Njc4OQ") \
        -> str:
    """A JWT-shaped token (header.payload.signature); nothing here verifies its signature."""
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': 4102444800, 'type': 'access'})}.{signature}"


def transcript(path: Path) -> list[dict]:
    """A recorded JSONL transcript of a real server ({"t", "dir", "raw"} per line)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


#: Raw recordings of a LangGraph Agent Server run (reasoning, one tool call, answer): the
#: shared interop recording (copied here: ``data/``) and the project's own interop transcript.
LANGGRAPH_OK = (DATA / "langgraph-transcript-ok-min.jsonl",
                ROOT / "tests" / "interop" / "langgraph" / "transcripts"
                / "run_streams_reasoning_tool_call_and_answer.jsonl")
