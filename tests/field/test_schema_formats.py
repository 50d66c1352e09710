"""Field report: an event whose ``format: date-time`` field holds ``2026-01-05 10:00:00``,
``yesterday at noon`` or ``2026-99-99T99:99:99Z`` passed rule 7.

Each server plays one otherwise correct run in which one event (``agent_thinking``)
carries such a timestamp. Rule 7 must fail, naming the field and the format, in the
step-by-step keywords and in the engine alike."""

from __future__ import annotations

import pytest

from field_servers import ScriptedServer, both, iso, use_target

BAD_DATE_TIMES = ["2026-01-05 10:00:00", "yesterday at noon", "2026-99-99T99:99:99Z"]


def bad_timestamp(value: str):
    async def script(peer) -> None:
        await peer.welcome()
        run_id, thread_id = await peer.next_start()
        events = peer.run_events(run_id, thread_id)
        events[1]["timestamp"] = value  # agent_thinking
        await peer.play(events)
    return script


@pytest.mark.parametrize("value", BAD_DATE_TIMES)
def test_netra_event_with_a_malformed_date_time_fails_rule_7(value):
    """netra: flat events whose ``timestamp`` is an ISO string with ``format: date-time``."""
    with ScriptedServer(bad_timestamp(value), shape="netra", select="token") as server:
        use_target(server, E2E_DIALECT="netra")
        stepwise, fanout = both()
    for verdict in (stepwise, fanout):
        assert verdict.outcome == "fail", verdict
        assert "Rule 7 (schema) violated" in verdict.message, verdict
        assert f"timestamp: '{value}' is not a 'date-time'" in verdict.message, verdict
        assert "agent_thinking" in verdict.message, verdict
    assert fanout.stats["violated_rules"] == {"rule 7": 1}, fanout.stats
    assert stepwise.outcome == fanout.outcome


def test_default_dialect_string_timestamp_is_checked_as_date_time_too():
    """default: a timestamp is unix seconds or a date-time string; a malformed string is neither."""
    with ScriptedServer(bad_timestamp("2026-01-05 10:00:00")) as server:
        use_target(server)
        stepwise, fanout = both()
    for verdict in (stepwise, fanout):
        assert verdict.outcome == "fail", verdict
        assert "Rule 7 (schema) violated" in verdict.message, verdict
        assert "timestamp" in verdict.message and "agent_thinking" in verdict.message, verdict
    assert fanout.stats["violated_rules"] == {"rule 7": 1}, fanout.stats


def test_well_formed_iso_timestamps_pass_rule_7():
    """The control: the same server with a correct ISO 8601 timestamp passes both transports."""
    with ScriptedServer(bad_timestamp(iso()), shape="netra", select="token") as server:
        use_target(server, E2E_DIALECT="netra")
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "pass", (stepwise, fanout)
