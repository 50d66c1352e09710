"""suites/staging against real agent servers, with only the dialect, the URL and the JWT
secret set: no failure, the tests that do not apply skip with their reason, a failing tool
is reported as the agent's error naming the tool, and a server that lets a second user
join a thread fails the test that owns it.

Each server runs in its own cached venv (``tests/interop/venvs.py``) on a free loopback
port; the suites run as ``robot`` subprocesses against it with only the dialect, the URL
and the secret set, as a team would (the URL implies ``E2E_TARGET=staging``), plus rule 6's
time budgets widened for a test machine busy with the other modules.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import interop_venv, note_ready
from .servers import LANGGRAPH_DIR, LangGraphServer, PydanticAIServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "suites"))
from suite_runs import RobotRun, clean_env, report, run_robot  # noqa: E402

pytestmark = [pytest.mark.interop("langgraph", "pydantic_ai"), pytest.mark.slow]

# Tests that must run and pass on both servers: chat, auth refusal, event flow, isolation, concurrency.
MUST_PASS = (
    "Backend Health Endpoint Reports Healthy", "Bearer Header Authentication Is Accepted",
    "Connection Without A Token Is Refused", "Malformed Token Is Refused", "Expired Token Is Refused",
    "Token With A Wrong Signature Is Refused", "Token Without A User Is Refused",
    "Run Contains The Required Events", "Run Starts With Agent Started And Ends Once", "Every Tool Call Completes",
    "Run Meets Its Time Budgets", "Every Event Matches Its Schema", "Run Conforms To The Protocol",
    "Tool Events Name The Tool", "Several Runs On One Connection Each Complete", "Run After Reconnecting Completes",
    "Agent Completed Arrives Exactly Once With An Answer", "Tool Results Reach The User",
    "Two Users Chatting At Once See Only Their Own Events", "Ten Users Chatting At Once See Only Their Own Events",
    "Concurrent Users Connect Within Thresholds", "Concurrent Users Chat Within Thresholds",
)
SECTION = "interop: suites/staging against real agent servers"


def _env(server, secret: str, dialect: str, **extra: str) -> dict[str, str]:
    # Rule 6's budgets sized for a busy 2-core test machine (ten users at once on a dev server
    # beside the other test modules took 2.03 s to the first event): these runs check the
    # dialects, not the servers' speed.
    env = clean_env(E2E_BACKEND_URL=server.base_url, E2E_JWT_SECRET=secret, E2E_DIALECT=dialect,
                    E2E_CONCURRENT_USERS="4", E2E_FIRST_EVENT_TIMEOUT="15s", E2E_RUN_TIMEOUT="60s", **extra)
    if dialect == "ag-ui":
        env["E2E_WS_URL"] = server.ws_url("/ws")
    return env


def _check_clean(run: RobotRun, name: str) -> None:
    report(SECTION, f"{name:<34} {run.counts()}, {run.wall:.1f}s")
    assert not run.failed, f"{name}: false failures:\n" + "\n".join(f"{t.name}: {t.message[:500]}" for t in run.failed)
    assert run.rc == 0, run.stdout[-2000:]
    for test in MUST_PASS:
        assert run.test(test).status == "PASS", f"{name}: '{test}' did not run and pass: {run.test(test).message}"
    for test in run.tests.values():
        if test.status == "SKIP":
            assert test.message.strip(), f"{name}: '{test.name}' skipped without saying why"


@pytest.fixture(scope="module")
def langgraph(tmp_path_factory, jwt_secret):
    venv = interop_venv("langgraph")
    with LangGraphServer(venv, LANGGRAPH_DIR, env={"E2E_JWT_SECRET": jwt_secret},
                         log_path=tmp_path_factory.mktemp("lg") / "server.log") as server:
        note_ready(server)
        yield server


@pytest.fixture(scope="module")
def pydantic_ai(tmp_path_factory, jwt_secret):
    venv = interop_venv("pydantic_ai")
    with PydanticAIServer(venv, env={"E2E_JWT_SECRET": jwt_secret},
                          log_path=tmp_path_factory.mktemp("pa") / "server.log") as server:
        note_ready(server)
        yield server


def test_langgraph_agent_server_passes_the_suites(langgraph, jwt_secret, tmp_path):
    run = run_robot(tmp_path, _env(langgraph, jwt_secret, "langgraph"), timeout=300)
    _check_clean(run, "LangGraph Agent Server")
    assert run.test("A Thread Belongs To Its User").status == "PASS"
    assert "no agent API" in run.test("Agent API Requires A Token").message


def test_pydantic_ai_over_ag_ui_passes_the_suites(pydantic_ai, jwt_secret, tmp_path):
    run = run_robot(tmp_path, _env(pydantic_ai, jwt_secret, "ag-ui"), timeout=300)
    _check_clean(run, "Pydantic AI over AG-UI")
    assert "welcome" in run.test("Connection Is Established With A Welcome Frame").message


def test_a_failing_langgraph_tool_is_the_agents_error_naming_the_tool(langgraph, jwt_secret, tmp_path):
    env = _env(langgraph, jwt_secret, "langgraph", E2E_ASSISTANT_ID="agent_failing")
    run = run_robot(tmp_path, env, ("--test", "Agent Completed Arrives Exactly Once With An Answer"), timeout=120)
    info = run.test("Agent Completed Arrives Exactly Once With An Answer")
    report(SECTION, f"{'LangGraph, tool raises':<34} {info.status}: {info.message.splitlines()[0][:160]}")
    assert info.status == "FAIL"
    assert "the run ended with the agent's error" in info.message and "lifecycle.failed" in info.message
    assert "get_weather" in info.message and "weather service unavailable" in info.message, info.message[:800]


def test_a_failing_pydantic_ai_tool_is_the_agents_error_naming_the_tool(jwt_secret, tmp_path):
    venv = interop_venv("pydantic_ai")
    with PydanticAIServer(venv, env={"E2E_JWT_SECRET": jwt_secret}, failing_tool=True,
                          log_path=tmp_path / "server.log") as server:
        note_ready(server)
        run = run_robot(tmp_path / "out", _env(server, jwt_secret, "ag-ui"),
                        ("--test", "Agent Completed Arrives Exactly Once With An Answer"), timeout=120)
    info = run.test("Agent Completed Arrives Exactly Once With An Answer")
    report(SECTION, f"{'Pydantic AI, tool raises':<34} {info.status}: {info.message.splitlines()[0][:160]}")
    assert info.status == "FAIL"
    assert "the run ended with the agent's error RUN_ERROR" in info.message
    assert "get_weather" in info.message and "weather service unavailable" in info.message, info.message[:800]


def test_a_thread_joinable_by_another_user_fails_its_test(jwt_secret, tmp_path):
    venv = interop_venv("langgraph")
    with LangGraphServer(venv, LANGGRAPH_DIR, env={"E2E_JWT_SECRET": jwt_secret, "AGENTKIT_LG_OWNER_SCOPING": "off"},
                         log_path=tmp_path / "server.log") as server:
        note_ready(server)
        run = run_robot(tmp_path / "out", _env(server, jwt_secret, "langgraph"),
                        ("--test", "A Thread Belongs To Its User"), timeout=120)
    info = run.test("A Thread Belongs To Its User")
    report(SECTION, f"{'LangGraph, no owner scoping':<34} {info.status}: {info.message.splitlines()[0][:160]}")
    assert info.status == "FAIL"
    assert "joined the thread" in info.message and "must belong to its user" in info.message, info.message[:800]
