"""Field report (the dialect issue): frames arrived, but none was an agent event of the
dialect, and the run waited for its whole budget before failing with "no event".

Within the first-event budget (``E2E_FIRST_EVENT_TIMEOUT``, 1 s here; the run budget is
3 s) both transports fail fast, listing the types that arrived and naming E2E_DIALECT."""

from __future__ import annotations

import pytest

from field_servers import ScriptedServer, both, use_target


def agui_run(peer, run_id, thread_id) -> list:
    return [{"type": "RUN_STARTED", "threadId": thread_id, "runId": run_id},
            {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Hello"},
            {"type": "RUN_FINISHED", "threadId": thread_id, "runId": run_id}]


def other_ids_run(peer, run_id, thread_id) -> list:
    return peer.run_events("run_nobody_asked_for", "thread_nobody_asked_for")


def not_json(peer, run_id, thread_id) -> list:
    return ["agent started", "agent thinking"]


def answering_with(frames):
    async def script(peer) -> None:
        await peer.welcome()
        while True:
            run_id, thread_id = await peer.next_start()
            await peer.play(frames(peer, run_id, thread_id))
    return script


CASES = {
    "another-wire-ag-ui": (agui_run, ["types ['RUN_FINISHED', 'RUN_STARTED', 'TEXT_MESSAGE_CONTENT']",
                                      "does not classify"]),
    "agent-events-with-other-ids": (other_ids_run, ["carry none of this run's ids",
                                                    "run_id='run_nobody_asked_for'"]),
    "text-that-is-not-json": (not_json, ["types ['<not json>']"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_frames_that_are_not_agent_events_of_the_dialect_fail_fast_naming_E2E_DIALECT(case):
    frames, phrases = CASES[case]
    with ScriptedServer(answering_with(frames)) as server:
        # a run budget far from the first-event budget: which one ended it shows on any machine
        use_target(server, E2E_FIRST_EVENT_TIMEOUT="1s", E2E_RUN_TIMEOUT="20s")
        stepwise, fanout = both(isolation=False)
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    for verdict in (stepwise, fanout):
        assert "within the first-event budget of 1s" in verdict.message or "within 1s" in verdict.message, verdict
        assert "E2E_DIALECT" in verdict.message and "dialect 'default'" in verdict.message, verdict
        for phrase in phrases:
            assert phrase in verdict.message, f"{phrase!r} not in {verdict}"
        assert verdict.elapsed < 10, f"fail fast at the first-event budget (1s), not the run budget (20s): {verdict}"
    assert fanout.stats["timeouts"] == 0 and fanout.stats["errors"] == 1, fanout.stats
