"""Helpers for the AgentBehaviour tests: agent runs built by hand from wire events (default
and AG-UI), scenario and suite files written to a temporary folder, and ``robot`` run on
such a suite against the embedded reference backend.

A unique module name (not ``helpers.py``) so it cannot clash with other test folders'
modules on ``sys.path``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot.api import ExecutionResult, ResultVisitor

import forked

from agentkit.wire import dialect as dialects
from agentkit.wire.event import Event
from agentkit.wire.run import RunRecord

ROOT = Path(__file__).resolve().parents[2]
RESOURCE = ROOT / "resources" / "agent_chat.resource"
SENT_AT = 1000.0
GAP = 0.01          # seconds between two hand-made events


# --- runs built by hand ------------------------------------------------------------------
@dataclass
class Call:
    """One tool call of a hand-made run: a result, or an error."""

    tool: str
    arguments: dict = field(default_factory=dict)
    result: Any = None
    error: str | None = None


def _default_messages(calls: list[Call], answer: str | list[str] | None, run_id: str, thread_id: str,
                      fail: str | None, usage: Any, other_thread: str | None) -> list[dict]:
    def env(kind: str, data: dict, thread: str = thread_id) -> dict:
        return {"type": kind, "run_id": run_id, "thread_id": thread, "user_id": "alice",
                "timestamp": 1_700_000_000.0, "data": data}

    out = [env("agent_started", {"agent_name": "weather-agent"}), env("agent_thinking", {"thought": "hmm"})]
    for call in calls:
        out.append(env("tool_executing", {"tool_name": call.tool, "parameters": call.arguments}))
        data = {"tool_name": call.tool, "result": call.result, "duration_ms": 10}
        if call.error is not None:
            data.update(result=None, error=call.error)
        out.append(env("tool_completed", data))
    if fail is not None:
        out.append(env("agent_error", {"error": fail}))
        return out
    text = "".join(answer) if isinstance(answer, list) else answer
    done = {"result": text}
    if usage is not None:
        done["usage"] = usage
    out.append(env("agent_completed", done, other_thread or thread_id))
    return out


def _agui_messages(calls: list[Call], answer: str | list[str] | None, run_id: str, thread_id: str,
                   fail: str | None, usage: Any, other_thread: str | None) -> list[dict]:
    out: list[dict] = [{"type": "RUN_STARTED", "threadId": thread_id, "runId": run_id}]
    for n, call in enumerate(calls, 1):
        key = f"call_{n}"
        args = json.dumps(call.arguments)
        half = len(args) // 2
        out.append({"type": "TOOL_CALL_START", "toolCallId": key, "toolCallName": call.tool,
                    "parentMessageId": "msg_1"})
        out += [{"type": "TOOL_CALL_ARGS", "toolCallId": key, "delta": d} for d in (args[:half], args[half:]) if d]
        out.append({"type": "TOOL_CALL_END", "toolCallId": key})
        content = f"Error: {call.error}" if call.error is not None else json.dumps(call.result)
        out.append({"type": "TOOL_CALL_RESULT", "messageId": f"tool_msg_{n}", "toolCallId": key,
                    "content": content, "role": "tool"})
    if fail is not None:
        out.append({"type": "RUN_ERROR", "message": fail, "code": "AGENT_ERROR"})
        return out
    chunks = answer if isinstance(answer, list) else ([answer] if answer else [])
    if chunks:
        out.append({"type": "TEXT_MESSAGE_START", "messageId": "msg_1", "role": "assistant"})
        out += [{"type": "TEXT_MESSAGE_CONTENT", "messageId": "msg_1", "delta": c} for c in chunks]
        out.append({"type": "TEXT_MESSAGE_END", "messageId": "msg_1"})
    done: dict[str, Any] = {"type": "RUN_FINISHED", "threadId": other_thread or thread_id, "runId": run_id,
                            "result": "".join(chunks) or None}
    if usage is not None:
        done["usage"] = usage
    out.append(done)
    return out


def agent_run(wire: str = "default", calls: list[Call] | None = None, answer: str | list[str] | None = "Done.",
              *, run_id: str = "run_1", thread_id: str = "thread_1", fail: str | None = None, usage: Any = None,
              other_thread: str | None = None, ended: bool = True, gap: float = GAP) -> RunRecord:
    """A run as a client of ``wire`` would have collected it, each event ``gap`` seconds after
    the previous one. ``other_thread``: the terminal event names that thread instead;
    ``ended=False``: the terminal event is missing."""
    build = _agui_messages if wire == "ag-ui" else _default_messages
    messages = build(list(calls or []), answer, run_id, thread_id, fail, usage, other_thread)
    if not ended:
        messages = messages[:-1]
    d = dialects.load(wire)
    events = [Event.from_text(i + 2, SENT_AT + gap * (i + 1), "hand", json.dumps(m), d)
              for i, m in enumerate(messages)]
    return RunRecord("hand", "alice", run_id, thread_id, SENT_AT, events, dialect=d,
                     ended="terminal" if ended else "timeout")


# --- robot runs of a suite in a temporary folder -----------------------------------------
@dataclass
class Outcome:
    name: str
    status: str
    message: str
    logged: list[str]          # every message logged inside the test, keywords included


@dataclass
class SuiteRun:
    rc: int
    wall: float
    outdir: Path
    stdout: str
    stderr: str
    tests: dict[str, Outcome]

    def test(self, name: str) -> Outcome:
        assert name in self.tests, (f"no test {name!r} in the run (rc {self.rc}); tests: {sorted(self.tests)}\n"
                                    f"{self.stdout[-3000:]}\n{self.stderr[-2000:]}")
        return self.tests[name]

    def log_html_strings(self) -> list[str]:
        return log_html_strings(self.outdir / "log.html")


class _Collect(ResultVisitor):
    def __init__(self) -> None:
        self.tests: dict[str, Outcome] = {}
        self.current: Outcome | None = None

    def start_test(self, test) -> None:
        self.current = Outcome(test.name, test.status, test.message, [])
        self.tests[test.name] = self.current

    def end_test(self, test) -> None:
        self.current = None

    def visit_message(self, msg) -> None:
        if self.current is not None:
            self.current.logged.append(msg.message)


def robot_command(suite: Path, outdir: Path) -> list[str]:
    return [sys.executable, "-m", "robot", "--outputdir", str(outdir), "--console", "dotted", str(suite)]


def start_robot(suite: Path, outdir: Path, env: dict[str, str]) -> subprocess.Popen:
    return forked.popen(robot_command(suite, outdir), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)


def finish_robot(proc: subprocess.Popen, outdir: Path, started: float, timeout: float = 120.0) -> SuiteRun:
    out, err = forked.finish(proc, timeout)
    wall = time.monotonic() - started
    output = outdir / "output.xml"
    assert output.is_file(), f"robot wrote no output.xml (rc {proc.returncode}):\n{out[-3000:]}\n{err[-2000:]}"
    collect = _Collect()
    ExecutionResult(str(output)).visit(collect)
    return SuiteRun(proc.returncode, wall, outdir, out, err, collect.tests)


def log_html_strings(path: Path) -> list[str]:
    """Every string of a Robot ``log.html``: Robot stores them in ``window.output["strings"]``,
    each either ``*``-prefixed plain text or base64 of zlib-compressed text, written as a
    JavaScript array (JSON but for ``\\x3c`` standing for ``<``)."""
    text = path.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r'window\.output\["strings"\] = window\.output\["strings"\]\.concat\((\[.*?\])\);',
                            text, re.S):
        block = re.sub(r"(?<!\\)((?:\\\\)*)\\x3c", r"\1\\u003c", block)
        for s in json.loads(block):
            out.append(s[1:] if s.startswith("*") else zlib.decompress(base64.b64decode(s)).decode("utf-8"))
    return out


SUITE_HEAD = f"""*** Settings ***
Resource    {RESOURCE.as_posix()}
Suite Teardown    The Target Is Released


*** Keywords ***
The Weather Example
    [Documentation]    The weather test as a product team writes it.
    An Authenticated User Is Connected    weather-user
    ${{result}}=    User Chats And The Agent Answers Correctly    What is the weather in Paris?
    Agent Should Call Tool    ${{result}}    get_weather    city=Paris
    Agent Answer Should Contain    ${{result}}    Paris
"""
