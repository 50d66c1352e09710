"""Field report: a load generator that is its own bottleneck. 400 sessions at once against
a server that accepts about 100 handshakes a second gave 245 handshake timeouts and no
sign that the client side was saturated.

Scaled down to the mechanisms: ``ramp_up`` spreads session starts, ``max_handshakes``
caps handshakes in flight (counted on the server), and a deliberately blocked client
event loop shows in ``generator_lag_*``, ``generator_saturated`` and ``warnings`` (the
summary's warning is checked on the folder's shared real ``robot`` run, ``field_robot.py``)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from field_servers import SECRET, ScriptedServer, engine, slow_run, use_target
from agentkit.transports.fanout import EngineSettings, SessionRun


def _spread(times: list[float]) -> float:
    return max(times) - min(times) if times else 0.0


def test_ramp_up_spreads_session_starts():
    with ScriptedServer() as server:
        use_target(server)
        ramped = engine(count=6, scenario="connect", ramp_up=timedelta(seconds=1))
        ramped_times = list(server.handshake_times)
        server.handshake_times.clear()
        at_once = engine(count=6, scenario="connect")
        at_once_times = list(server.handshake_times)
    assert ramped.outcome == at_once.outcome == "pass", (ramped, at_once)
    assert ramped.stats["ramp_up_s"] == 1.0, ramped.stats
    assert _spread(ramped_times) >= 0.8, f"6 starts over 1s ramp-up arrived within {_spread(ramped_times):.2f}s"
    # Each start comes no earlier than its slot (i x 0.2 s); a busy machine may only make it later.
    offsets = [t - ramped_times[0] for t in ramped_times]
    assert all(off >= i * 0.2 - 0.05 for i, off in enumerate(offsets)), f"a start came before its slot: {offsets}"
    assert _spread(at_once_times) < 0.8, f"without ramp-up the starts came over {_spread(at_once_times):.2f}s"


def test_max_handshakes_caps_handshakes_in_flight_on_the_server():
    with ScriptedServer(handshake_delay=0.3) as server:  # a server that takes 0.3 s per handshake
        use_target(server)
        capped = engine(count=6, scenario="connect", max_handshakes=2)
        capped_peak = server.peak_handshakes
        server.peak_handshakes = 0
        uncapped = engine(count=6, scenario="connect")
        uncapped_peak = server.peak_handshakes
    assert capped.outcome == uncapped.outcome == "pass", (capped, uncapped)
    assert capped.stats["max_handshakes"] == 2, capped.stats
    assert capped_peak == 2, f"at most 2 handshakes in flight on the server, saw {capped_peak}"
    assert capped.elapsed >= 0.85, f"3 waves of 0.3s handshakes take 0.9s, took {capped.elapsed:.2f}s"
    assert uncapped_peak >= 4, f"the control should overlap handshakes, saw at most {uncapped_peak}"


def _run_batch(server: ScriptedServer, block_loop: bool) -> dict:
    settings = EngineSettings(ws_url=server.ws_url, jwt_secret=SECRET, count=4, concurrency=4, session_timeout=8,
                              run_timeout=8, first_event_timeout=5)
    run = SessionRun(settings)
    stop = threading.Event()

    def block() -> None:  # the client's own loop made busy: 0.4 s of blocking every 0.45 s
        while not stop.is_set():
            loop = run._loop
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(time.sleep, 0.4)
                except RuntimeError:
                    return
            stop.wait(0.45)

    blocker = threading.Thread(target=block, daemon=True)
    with run:
        if block_loop:
            blocker.start()
        try:
            return run.result(30)
        finally:
            stop.set()
            if block_loop:
                blocker.join(5)


def test_blocked_client_loop_shows_in_generator_lag_and_warnings():
    """A batch of about 2 s whose loop is blocked 0.4 s of every 0.45 s: the lag probe gets
    few samples (a blocked loop runs it seldom), each of them about 400 ms late; that is a
    saturated generator however few the samples are."""
    with ScriptedServer(slow_run(1.0)) as server:
        blocked = _run_batch(server, block_loop=True)
        free = _run_batch(server, block_loop=False)
    assert blocked["generator_lag_max_ms"] >= 250, blocked
    assert blocked["generator_lag_p95_ms"] >= 200, blocked
    assert blocked["generator_saturated"] is True, blocked
    assert blocked["warnings"] and "load generator was the bottleneck" in blocked["warnings"][0], blocked
    assert "ramp_up" in blocked["warnings"][0] and "max_handshakes" in blocked["warnings"][0], blocked
    assert free["generator_saturated"] is False and free["warnings"] == [], free
    assert free["generator_lag_p95_ms"] is not None and free["generator_lag_p95_ms"] <= 200, free


def test_saturated_generator_warns_in_the_summary_of_a_robot_run(field_robot_run):
    """``Saturated Load Generator`` in the shared robot run (the engine's loop blocked on
    purpose): the warning reaches the log, summary.md and summary.html."""
    run = field_robot_run
    assert run.status("Saturated Load Generator") == "PASS", run.tests["Saturated Load Generator"]
    phrase = "the load generator was the bottleneck"
    assert phrase in (run.outdir / "summary.md").read_text(encoding="utf-8"), "summary.md has no generator warning"
    assert phrase in (run.outdir / "summary.html").read_text(encoding="utf-8"), "summary.html has no generator warning"
    assert phrase in (run.outdir / "output.xml").read_text(encoding="utf-8"), "the log has no generator warning"
