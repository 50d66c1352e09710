"""Field report: binary frames left no trace in the frame log, the timeline or the summary.

They show as binary, and they are judged by the dialect: JSON in a binary frame is an
agent event only where the dialect says so (``events.binary_json``). (Binary frames in
the summary are checked on the folder's shared real ``robot`` run, ``field_robot.py``.)"""

from __future__ import annotations

import json

from field_servers import ScriptedServer, both, use_target
from agentkit import timeline


async def run_in_binary_frames(peer) -> None:
    """The welcome as text, every event of the run as JSON in a binary frame."""
    await peer.welcome()
    while True:
        run_id, thread_id = await peer.next_start()
        await peer.play([json.dumps(e).encode() for e in peer.run_events(run_id, thread_id)])


BLOB = b"\x89PNG\r\n\x1a\n not an event"  # 21 bytes


async def blob_mid_run(peer) -> None:
    """A correct run with one binary frame that is not JSON between two events."""
    await peer.welcome()
    while True:
        run_id, thread_id = await peer.next_start()
        events = peer.run_events(run_id, thread_id)
        await peer.play(events[:2] + [BLOB] + events[2:])


def _binary_entries(verdict) -> list:
    return [m for m in verdict.detail.get("received", []) if isinstance(m, dict) and m.get("binary")]


def test_json_events_in_binary_frames_are_refused_where_the_dialect_reads_text_only():
    with ScriptedServer(run_in_binary_frames) as server:
        use_target(server, E2E_RUN_TIMEOUT="20s")  # far from the 1s first-event budget
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    for verdict in (stepwise, fanout):
        assert "'<binary>'" in verdict.message, verdict     # the unclassified frames, named as binary
        assert "E2E_DIALECT" in verdict.message, verdict
        assert "dialect 'default'" in verdict.message, verdict
    assert "<binary" in stepwise.message.split("Frames since the message:")[-1], "the timeline shows them as binary"
    assert len(_binary_entries(stepwise)) == 5, stepwise.detail.get("received")
    assert fanout.stats["binary_frames"] == 5, fanout.stats
    assert stepwise.elapsed < 10 and fanout.elapsed < 10, "fail fast at the first-event budget (1s), not the run budget (20s)"


def test_json_events_in_binary_frames_pass_where_the_dialect_allows_them(binary_json_dialect):
    with ScriptedServer(run_in_binary_frames) as server:
        use_target(server, E2E_DIALECT=binary_json_dialect)
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "pass", (stepwise, fanout)
    assert fanout.stats["binary_frames"] == 5, fanout.stats
    agent = [e for e in stepwise.detail["frames"] if e.binary and e.is_agent_event]
    assert len(agent) == 5, stepwise.detail["frames"]
    # accepted as agent events, they still show as binary in the timeline (one line each)
    lines = timeline.text(stepwise.detail["frames"]).splitlines()
    binary_lines = [line for line in lines if "binary" in line]
    assert len(binary_lines) == 5, "the timeline does not show which frames came binary:\n" + "\n".join(lines)


def test_binary_frame_mid_run_shows_in_the_frame_log_timeline_and_stats():
    with ScriptedServer(blob_mid_run) as server:
        use_target(server)
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "pass", (stepwise, fanout)
    entries = _binary_entries(stepwise)
    assert len(entries) == 1, stepwise.detail.get("received")
    assert f"binary frame of {len(BLOB)} bytes" in entries[0]["parse_error"], entries[0]
    frames = stepwise.detail["frames"]
    text = timeline.text(frames)
    assert "<binary>" in text and f"<binary frame, {len(BLOB)} bytes: 89 50 4e 47" in text, text
    table = timeline.html_table(frames)
    assert "&lt;binary&gt;" in table, table
    assert fanout.stats["binary_frames"] == 1, fanout.stats


def _section(text: str, start: str, end: str) -> str:
    head = text.find(start)
    if head < 0:
        return ""
    tail = text.find(end, head + len(start))
    return text[head:] if tail < 0 else text[head:tail]


def test_binary_frames_show_in_the_summary_of_a_robot_run(field_robot_run):
    """``Binary Frame Mid Run`` in the shared robot run: one binary frame on the step-by-step
    connection, one per engine session (2); the summary shows both kinds."""
    run = field_robot_run
    assert run.status("Binary Frame Mid Run Step By Step") == "PASS", run.tests
    assert run.status("Binary Frame Mid Run Engine") == "PASS", run.tests
    md = (run.outdir / "summary.md").read_text(encoding="utf-8")
    html = (run.outdir / "summary.html").read_text(encoding="utf-8")
    assert "<binary> 1" in md and "1 binary frame(s)" in md, "step-by-step binary frames in summary.md"
    engine_md = _section(md, "## Concurrent sessions", "\n## ")
    engine_html = _section(html, '<section id="concurrency">', "</section>")
    assert engine_md and engine_html, "the summary has no concurrent-sessions section"
    assert "binary" in engine_md, f"the engine's binary frames are not in summary.md:\n{engine_md}"
    assert "binary" in engine_html, "the engine's binary frames are not in summary.html's concurrency section"
