"""Field report (the dialect issue): a backend that sends ``agent_completed`` twice passed
"Agent Completed Arrives Exactly Once".

A run keeps listening for its grace window (``E2E_RUN_GRACE``, default 0.3 s) after its
first terminal event, so a second terminal event in that window is in the run and fails
rule 1, in the step-by-step keywords (``Get Run Event Count  completed  ==  1`` as the
suite asks, and the rules) and in the engine."""

from __future__ import annotations

import asyncio

import pytest

from field_servers import ScriptedServer, both, token_for, use_target


def second_terminal(kind: str, after: float):
    """A correct run, then ``kind`` (``agent_completed`` or ``agent_error``) again ``after`` s later."""

    async def script(peer) -> None:
        await peer.welcome()
        run_id, thread_id = await peer.next_start()
        events = peer.run_events(run_id, thread_id)
        await peer.play(events)
        await asyncio.sleep(after)
        details = {"result": "Said twice."} if kind == "agent_completed" else {"error": "late failure"}
        await peer.send(peer.event(kind, run_id, thread_id, **details))
    return script


def completed_count_check(sessions_alias) -> str:
    """The suite's 'Agent Completed Arrives Exactly Once' check: ``Get Run Event Count`` == 1."""
    from AgentEvents import AgentEvents
    from AgentSessions import AgentSessions

    sessions = AgentSessions()
    alias = sessions.connect_to_agent_websocket(token_for("field-dave"), alias=sessions_alias)
    run = sessions.send_user_message("Summarise the release notes", alias=alias)
    record = sessions.collect_agent_run(run)
    try:
        from assertionengine import AssertionOperator

        AgentEvents().get_run_event_count(record, "completed", AssertionOperator("=="), 1)
    except AssertionError as err:
        return str(err)
    finally:
        sessions.close_all_connections()
    return ""


@pytest.mark.parametrize("kind", ["agent_completed", "agent_error"])
def test_second_terminal_event_within_the_grace_window_fails_rule_1(kind):
    with ScriptedServer(second_terminal(kind, 0.1)) as server:
        use_target(server)
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    for verdict in (stepwise, fanout):
        assert "Rule 1 (start and end) violated" in verdict.message, verdict
        assert "expected exactly one terminal event, got 2" in verdict.message, verdict
        assert "listened 0.3s after its end" in verdict.message, verdict
    assert fanout.stats["violated_rules"] == {"rule 1": 1}, fanout.stats


def test_agent_completed_twice_fails_agent_completed_arrives_exactly_once():
    with ScriptedServer(second_terminal("agent_completed", 0.1)) as server:
        use_target(server)
        message = completed_count_check("field-dave")
    assert "Number of completed events" in message and "2" in message, message


def test_longer_E2E_RUN_GRACE_catches_a_later_second_terminal_event():
    with ScriptedServer(second_terminal("agent_completed", 0.6)) as server:
        use_target(server, E2E_RUN_GRACE="1s")
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    for verdict in (stepwise, fanout):
        assert "expected exactly one terminal event, got 2" in verdict.message, verdict
        assert "listened 1s after its end" in verdict.message, verdict
