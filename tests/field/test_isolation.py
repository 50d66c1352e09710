"""Field report: isolation compared only ``user_id``. Another user's run stamped with the
recipient's ``user_id``, or with none, or arriving just after the recipient's run ended,
passed the isolation suites.

An agent event of a run this connection never started is foreign whatever it says
about its user (rule 5). Each server plays the recipient's run correctly and, on the
same connection, the events of another run (``run_other``/``thread_other``): the
recipient's own run stays correct (no other rule is broken), rule 5 fails, naming the
foreign run, in both transports."""

from __future__ import annotations

import asyncio

import pytest

from field_servers import ScriptedServer, both, use_target

FOREIGN_RUN = "run_of_someone_else"
FOREIGN_THREAD = "thread_of_someone_else"


def leaking(user: str, when: str, delay: float = 0.15):
    """``user``: ``"recipient"`` (stamped with the recipient's id) or ``"none"`` (no user_id).
    ``when``: ``"during"`` (interleaved in the recipient's run) or ``"after"`` (``delay``
    seconds after the recipient's run ended)."""

    async def script(peer) -> None:
        await peer.welcome()
        run_id, thread_id = await peer.next_start()
        stamp = "<self>" if user == "recipient" else None
        mine = peer.run_events(run_id, thread_id)
        foreign = peer.run_events(FOREIGN_RUN, FOREIGN_THREAD, user=stamp)[:2]  # started, thinking
        if when == "during":
            await peer.play(mine[:2] + foreign + mine[2:])
        else:
            await peer.play(mine)
            await asyncio.sleep(delay)
            await peer.play(foreign)
    return script


CASES = {
    "stamped-with-the-recipients-user-id": ("recipient", "during", {}),
    "with-no-user-id": ("none", "during", {}),
    "just-after-the-recipients-run-ended": ("recipient", "after", {}),
    "later-within-a-longer-E2E_RUN_GRACE": ("none", "after", {"E2E_RUN_GRACE": "1s"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_event_of_a_run_the_connection_never_started_is_foreign(case):
    user, when, env = CASES[case]
    delay = 0.6 if env else 0.15
    with ScriptedServer(leaking(user, when, delay)) as server:
        use_target(server, **env)
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    for verdict in (stepwise, fanout):
        assert "Rule 5 (isolation) violated" in verdict.message, verdict
        assert "an event of a run this connection never started" in verdict.message, verdict
        assert repr(FOREIGN_RUN) in verdict.message, verdict
        for other in ("Rule 1", "Rule 3", "Rule 4"):
            assert other not in verdict.message, f"the recipient's own run is correct: {verdict}"
    # both foreign events are counted, and only rule 5 is violated
    assert fanout.stats["isolation_violations"] == 2, fanout.stats
    assert fanout.stats["violated_rules"] == {"rule 5": 2}, fanout.stats
    assert fanout.stats["rule_violations"] == 0, fanout.stats
    assert "2 foreign event(s)" in stepwise.message, stepwise


def test_connection_that_receives_only_its_own_run_passes():
    """The control: the same server without the other run."""
    with ScriptedServer() as server:
        use_target(server)
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "pass", (stepwise, fanout)
    assert fanout.stats["isolation_violations"] == 0
