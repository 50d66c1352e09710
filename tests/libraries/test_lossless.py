"""Nothing is lost: 1,000 runs on one connection, waits interleaved with the sends, then
every event of every run is found in the connection's log, in order, none dropped."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta


from AgentAuth import AgentAuth
from AgentEvents import AgentEvents
from AgentSessions import AgentSessions

RUNS = 1000
LIFECYCLE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]


def test_thousand_runs_on_one_connection_lose_nothing(backend):
    sessions, events = AgentSessions(), AgentEvents()
    token = AgentAuth().create_test_token("lossless", secret=backend.jwt_secret)
    sessions.connect_to_agent_websocket(token, url=backend.ws_url, alias="lossless")

    runs, waited = [], []
    for i in range(RUNS):
        runs.append(sessions.send_user_message(f"message {i}", run_id=f"run_{i:04d}", thread_id=f"thread_{i:04d}"))
        if i % 10 == 0:
            # a keyword waiting between two sends: moves the cursor, must not consume anything
            event = sessions.wait_for_event("agent_started", f"run_id=run_{i:04d}", timeout=timedelta(seconds=60))
            waited.append(event["run_id"])
    assert waited == [f"run_{i:04d}" for i in range(0, RUNS, 10)]

    # Budgets bound a hang only: 1,000 runs share the machine with whatever else runs.
    records = [sessions.collect_agent_run(run, timeout=timedelta(seconds=120)) for run in runs]
    for record in records:
        assert [e.type for e in record.events] == LIFECYCLE, (record.run_id, [e.type for e in record.events])
        # all 1,000 messages went out at once: the last runs start late, and timing is not what is checked here
        events.agent_run_should_complete_with_all_required_events(record, first_event=timedelta(seconds=120),
                                                                  whole_run=timedelta(seconds=120))

    # the connection log: one welcome + 6 events per run, numbered without a gap, in arrival order
    log = sessions.get_event_log("lossless")
    assert len(log) == 1 + RUNS * len(LIFECYCLE)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert all(a.received <= b.received for a, b in zip(log, log[1:]))
    by_run = defaultdict(list)
    for e in log[1:]:
        by_run[e.run_id].append(e)
    assert set(by_run) == {f"run_{i:04d}" for i in range(RUNS)}
    for record in records:
        # the run's record holds exactly the log's events of that run, the same objects, in log order
        assert [id(e) for e in by_run[record.run_id]] == [id(e) for e in record.events]
        assert [e.seq for e in record.events] == sorted(e.seq for e in record.events)
    # the backend interleaved the runs: ordering per run was not trivially given by the stream
    assert any(by_run[f"run_{i:04d}"][-1].seq > by_run[f"run_{i + 1:04d}"][0].seq for i in range(RUNS - 1))
