"""The keyword libraries inside real Robot runs (``robot.run`` on tests/libraries/robot/):
connections closed at test end also when the test fails, the run timeline as a table in
the log, tokens and secrets never in output.xml or log.html, and a fault failing a test
with its rule while the embedded backend is still stopped."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import psutil
import pytest
import robot
from robot.api import ExecutionResult, ResultVisitor

from AgentSessions import AgentSessions
from agentkit.wire import dialect as dialects
from agentkit import target as targets
from agentkit.transports.threaded import REGISTRY

HERE = Path(__file__).parent / "robot"
LIBRARIES = Path(__file__).resolve().parents[2] / "libraries"


def run_suite(name: str, outputdir: Path, **options) -> tuple[int, str, ExecutionResult]:
    console = io.StringIO()
    rc = robot.run(str(HERE / name), outputdir=str(outputdir), pythonpath=[str(LIBRARIES)], stdout=console,
                   stderr=console, **options)
    return rc, console.getvalue(), ExecutionResult(str(outputdir / "output.xml"))


def log_html_strings(path: Path) -> list[str]:
    """Every string of log.html's data model, decompressed (long ones are zlib + base64 there)."""
    html = path.read_text(encoding="utf-8")
    chunks = re.findall(r'window\.output\["strings"\] = window\.output\["strings"\]\.concat\((\[.*?\])\);\n', html, re.S)
    assert chunks, "log.html has no string table: its format changed, fix this helper"
    out = []
    for chunk in chunks:
        for s in json.loads(chunk.replace("\\x3c", "\\u003c")):
            out.append(s[1:] if s.startswith("*") else zlib.decompress(base64.b64decode(s)).decode("utf-8"))
    return out


class Messages(ResultVisitor):
    def __init__(self) -> None:
        self.messages = []

    def visit_message(self, msg) -> None:
        self.messages.append(msg)


def messages_of(item) -> list:
    collector = Messages()
    item.visit(collector)
    return collector.messages


def reset_globals() -> None:
    AgentSessions().close_all_connections()
    targets.set_current(None)
    dialects.use("default")


# --- the session backend as "staging" ---------------------------------------------------------
@pytest.fixture(scope="module")
def staging_run(backend, tmp_path_factory):
    out = tmp_path_factory.mktemp("robot-staging")
    tokens = out / "tokens.txt"
    reset_globals()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"E2E_BACKEND_URL": backend.url, "E2E_AUTH_URL": backend.url,
                            "E2E_JWT_SECRET": backend.jwt_secret,
                            "E2E_OAUTH_SIMULATION_KEY": backend.simulation_key}.items():
            mp.setenv(name, value)
        mp.delenv("E2E_TARGET", raising=False)
        rc, console, result = run_suite("connections_and_secrets.robot", out, loglevel="TRACE",
                                        variable=[f"TOKENS_FILE:{tokens}"])
    suite_conn = REGISTRY.get("suite-conn")
    state = {"suite_conn_open": suite_conn.is_open, "suite_conn_frames": [e.type for e in suite_conn.snapshot()],
             "target_after": targets.current()}
    reset_globals()
    return {"rc": rc, "console": console, "result": result, "out": out, "tokens": tokens, "state": state,
            "backend": backend}


def test_suite_result_is_as_designed(staging_run):
    tests = {t.name: t for t in staging_run["result"].suite.tests}
    assert staging_run["rc"] == 1, staging_run["console"]
    assert tests["Failing Test Leaves A Connection Open"].status == "FAIL"
    assert tests["Failing Test Leaves A Connection Open"].message == "Deliberate failure with 'left-open' still open"
    others = {n: (t.status, t.message) for n, t in tests.items() if n != "Failing Test Leaves A Connection Open"}
    assert all(status == "PASS" for status, _ in others.values()), others


def test_listener_closes_the_failed_tests_connection(staging_run):
    failed = next(t for t in staging_run["result"].suite.tests if t.status == "FAIL")
    texts = [m.message for m in messages_of(failed)]
    # the listener logged every frame of the connection it closed when the test ended
    closing = [t for t in texts if "All 3 frames received on &#x27;left-open&#x27;" in t]
    # the close is the client's (the listener's), with why; the code is the server's echo, or none when the
    # closing call read the echo before the reader thread did
    assert len(closing) == 1 and re.search(r"<td>&lt;close&gt;</td>(<td></td>){5}<td>connection closed by the client, "
                                           r"code (1000|None) \(the test that opened it ended\)</td>", closing[0])
    assert staging_run["result"].suite.tests[1].name == "Connection Was Closed When The Failing Test Ended"


def test_suite_connection_closed_when_the_suite_ended(staging_run):
    state = staging_run["state"]
    assert state["suite_conn_open"] is False
    assert state["suite_conn_frames"] == ["system_message", "pong", "<close>"]
    assert state["target_after"] is None  # Release Target in the suite teardown


def test_run_timeline_is_a_table_in_the_log(staging_run):
    test = next(t for t in staging_run["result"].suite.tests if t.name == "Run Timeline Is Logged As A Table")
    collect = next(kw for kw in test.body if kw.name == "Collect Agent Run")
    tables = [m for m in collect.messages if m.html and "<table" in m.message]
    assert len(tables) == 1
    table = tables[0].message
    assert re.search(r"Run run_\w+ on &#x27;bob&#x27; \(6 events, terminal\)", table)
    for kind in ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"):
        assert f"<td>{kind}</td>" in table
    assert "<td>search_docs</td>" in table
    assert any("<td>tool_executing</td>" in s for s in log_html_strings(staging_run["out"] / "log.html"))


def test_tokens_and_secrets_never_reach_the_output(staging_run):
    backend = staging_run["backend"]
    tokens = staging_run["tokens"].read_text(encoding="utf-8").split()
    assert len(tokens) == 3 and all(t.count(".") == 2 and len(t) > 100 for t in tokens)
    forbidden = tokens + [backend.jwt_secret, backend.simulation_key]
    out = staging_run["out"]
    output_xml = (out / "output.xml").read_text(encoding="utf-8")
    log_strings = "\n".join(log_html_strings(out / "log.html"))
    report = (out / "report.html").read_text(encoding="utf-8")
    # the scan can see: the things logged next to the tokens are there
    assert "Created token for carol" in output_xml and "Created token for carol" in log_strings
    assert "Return: Target(profile='staging'" in output_xml  # Resolve Target's return value, at TRACE
    for value in forbidden:
        assert value not in output_xml
        assert value not in log_strings
        assert value not in report
        assert value not in staging_run["console"]
    # masked forms are what shows
    assert f"•••• ({len(backend.jwt_secret)} chars)" in output_xml
    assert f"{tokens[0][:4]}…{tokens[0][-4:]} ({len(tokens[0])} chars)" in output_xml


def test_target_is_published_in_the_metadata(staging_run):
    metadata = staging_run["result"].suite.metadata
    assert metadata["Target"] == "staging"
    assert metadata["Target ws url"] == staging_run["backend"].ws_url
    assert metadata["Target jwt secret"] == f"•••• ({len(staging_run['backend'].jwt_secret)} chars)"


# --- the local target with a fault --------------------------------------------------------------
def test_fault_fails_the_test_with_its_rule_and_the_backend_is_stopped(tmp_path):
    reset_globals()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2E_REFERENCE_FAULTS", "drop-tool-completed")
        mp.delenv("E2E_TARGET", raising=False)
        rc, console, result = run_suite("local_target_with_fault.robot", tmp_path)
    try:
        assert rc == 1, console
        test = result.suite.tests[0]
        assert test.status == "FAIL"
        assert test.message.startswith("- Rule 3 (pairing) violated: expected tool_completed for 'search_docs' "
                                       "after tool_executing at ")
        assert result.suite.metadata["Target"] == "embedded reference backend"
        assert result.suite.metadata["Target faults"] == "drop-tool-completed"
        pids = [int(m) for m in re.findall(r"embedded backend pid=(\d+)", (tmp_path / "output.xml").read_text())]
        assert len(pids) == 1
        # no Release Target in the suite: the library listener stopped the backend when the suite ended
        assert not psutil.pid_exists(pids[0])
        assert targets.current() is None
        assert (tmp_path / "reference-backend.log").is_file()
    finally:
        reset_globals()


# --- libdoc ------------------------------------------------------------------------------------
def test_libdoc_builds_every_library_without_warnings(tmp_path):
    script = LIBRARIES.parent / "tools" / "libdoc.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    libraries = sorted(p.stem for p in LIBRARIES.glob("*.py"))
    resources = sorted(p.stem for p in (LIBRARIES.parent / "resources").glob("*.resource"))
    assert "AgentBehaviour" in libraries and "agent_chat" in resources
    assert sorted(p.stem for p in tmp_path.glob("*.html")) == sorted(libraries + resources)
    # the library introductions (class docstrings) and the keywords are in the pages
    expected = {"AgentSessions": ["nothing is lost between two keywords", "Collect Agent Run"],
                "TargetConfig": ["E2E_BACKEND_URL", "Resolve Target"],
                "AgentEvents": ["Rule 3 (pairing) violated", "Use Event Dialect"],
                "AgentAuth": ["simulation key", "Create Expired Token"],
                "AgentApi": ["Each request and response is logged", "Get Agent Api"],
                "AgentBehaviour": ["did it do the right thing?", "Agent Should Call Tool"],
                "agent_chat": ["Plain-language keywords for testing an AI-agent chat backend",
                               "User Chats And The Agent Answers Correctly"]}
    for name, phrases in expected.items():
        page = (tmp_path / f"{name}.html").read_text(encoding="utf-8")
        for phrase in phrases:
            assert phrase in page, (name, phrase)
